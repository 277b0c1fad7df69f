"""Event types and their rules: which template goes out on which channels, and the payload's
JSON Schema. Built-in types ship with the product; managers register custom ones."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from backend.auth import Principal
from backend.channels import Channel
from backend.db.models import EventType
from backend.db.repositories.event_types import EventTypeRepository
from backend.db.repositories.templates import TemplateRepository
from backend.errors import ConflictError, NotFoundError, ValidationError
from backend.services import workflows
from backend.services.digests import check_rule as check_digest
from backend.services.expiring import ExpiringCache
from backend.services.limits import check_window
from backend.services.payloads import PayloadValidator, check_payload_schema, payload_validator
from backend.services.templates import template_content

NAME_RE = re.compile(r"^[a-z][a-z0-9_.-]{0,99}$")


@dataclass(frozen=True, slots=True)
class EventRule:
    name: str
    template_slug: str | None
    channels: tuple[Channel, ...]
    critical: bool
    validator: PayloadValidator | None
    throttle: tuple[int, int] | None = None  # (messages, window seconds) per user
    digest: dict[str, Any] | None = None  # see backend/services/digests.py


@dataclass(frozen=True, slots=True)
class WorkflowInfo:
    """What ingestion needs of an event type's current workflow."""

    id: str
    plain: bool  # one send step doing what the rule does: dispatched without a run
    cancels: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class TemplateInfo:
    slug: str
    channels: frozenset[Channel]


@dataclass(frozen=True, slots=True)
class EventTypeData:
    name: str
    description: str = ""
    payload_schema: dict[str, Any] | None = None
    template_slug: str | None = None
    channels: Sequence[Channel] = ()
    critical: bool = False
    throttle: tuple[int, int] | None = None  # at most (messages, per window seconds) per user
    digest: dict[str, Any] | None = None  # every_seconds | cron, key, template_slug


def _validator(schema: dict[str, Any] | None) -> PayloadValidator | None:
    return payload_validator(schema) if schema is not None else None


class RuleCache:
    """Per-process cache of event rules and template channels, so ingestion rarely touches
    PostgreSQL. Entries live ``ttl`` seconds: a rule changed by a manager applies to events
    accepted after that, never to events already accepted. One read per expired entry, shared
    by the requests waiting for it (backend.services.expiring)."""

    def __init__(self, ttl: float = 5.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._rules: ExpiringCache[str, EventRule | None] = ExpiringCache(ttl, clock)
        self._templates: ExpiringCache[tuple[str, str | None], TemplateInfo | None] = ExpiringCache(
            ttl, clock
        )
        self._workflows: ExpiringCache[str, WorkflowInfo | None] = ExpiringCache(ttl, clock)

    def invalidate(self) -> None:
        self._rules.clear()
        self._templates.clear()
        self._workflows.clear()

    async def workflow(self, session: AsyncSession, rule: EventRule) -> WorkflowInfo | None:
        """The rule's event type's current workflow, cached as rules are."""

        async def load() -> WorkflowInfo | None:
            row = await workflows.current_workflow(session, event_type=rule.name)
            if row is None:
                return None
            return WorkflowInfo(
                id=str(row.id),
                plain=workflows.is_plain(
                    row.steps, template_slug=rule.template_slug, channels=rule.channels
                ),
                cancels=tuple(row.cancels),
            )

        return await self._workflows.get(rule.name, load)

    async def rule(self, session: AsyncSession, name: str) -> EventRule | None:
        async def load() -> EventRule | None:
            row = await EventTypeRepository(session).get(name)
            if row is None:
                return None
            return EventRule(
                name=row.name,
                template_slug=row.template_slug,
                channels=tuple(Channel(c) for c in row.channels),
                critical=row.critical,
                validator=_validator(row.payload_schema),
                throttle=(row.throttle_limit, row.throttle_window_seconds)
                if row.throttle_limit and row.throttle_window_seconds
                else None,
                digest=row.digest,
            )

        return await self._rules.get(name, load)

    async def template(
        self, session: AsyncSession, slug: str, *, tenant_id: str | None = None
    ) -> TemplateInfo | None:
        """The template sent under ``slug`` (for ``tenant_id``: its override, else the shared
        one). Only templates that exist are cached: one created a moment ago is found at once."""

        async def load() -> TemplateInfo | None:
            row = await TemplateRepository(session).effective(slug, tenant_id)
            if row is None:
                return None
            return TemplateInfo(
                slug=slug, channels=frozenset(c.channel for c in template_content(row))
            )

        return await self._templates.get((slug, tenant_id), load, keep=lambda i: i is not None)


async def list_event_types(session: AsyncSession) -> list[EventType]:
    return await EventTypeRepository(session).all()


async def register_event_type(
    session: AsyncSession, *, actor: Principal, data: EventTypeData
) -> EventType:
    """Create or change a custom event type. Built-in types cannot be changed."""
    if not NAME_RE.match(data.name):
        raise ValidationError(
            "An event type name is lowercase letters, digits, '_', '.', '-', "
            "starting with a letter",
            field="name",
        )
    if data.payload_schema is not None:
        check_payload_schema(data.payload_schema, field="payloadSchema")
    if not data.channels:
        raise ValidationError("Give at least one default channel", field="channels")
    digest = None
    if data.digest is not None:
        digest = check_digest(data.digest)
        slug = digest.get("template_slug")
        if slug and await TemplateRepository(session).get_by_slug(slug) is None:
            raise NotFoundError(f"No template with slug '{slug}'", field="digest.templateSlug")
    if data.throttle is not None:
        check_window(
            *data.throttle, limit_field="throttle.limit", window_field="throttle.windowSeconds"
        )
    if data.template_slug is None:
        raise ValidationError("Give the default template", field="templateSlug")
    template = await TemplateRepository(session).get_by_slug(data.template_slug)
    if template is None:
        raise NotFoundError(f"No template with slug '{data.template_slug}'", field="templateSlug")
    available = {c.channel for c in template_content(template)}
    missing = [c.value for c in data.channels if c not in available]
    if missing:
        raise ValidationError(
            f"Template '{data.template_slug}' has no content for: {', '.join(missing)}",
            field="channels",
        )
    repo = EventTypeRepository(session)
    existing = await repo.get(data.name)
    if existing is not None and existing.builtin:
        raise ConflictError(f"'{data.name}' is a built-in event type", field="name")
    row = existing or EventType(name=data.name, builtin=False)
    row.description = data.description
    row.payload_schema = data.payload_schema
    row.template_slug = data.template_slug
    row.channels = list(dict.fromkeys(c.value for c in data.channels))
    row.critical = data.critical
    row.throttle_limit, row.throttle_window_seconds = data.throttle or (None, None)
    row.digest = digest
    if existing is None:
        await repo.add(row)
    else:
        await session.flush()
    # A type whose workflow is the plain one follows its rule (a new type gets one).
    await workflows.keep_plain_workflow(session, actor=actor, event_type=row)
    return row
