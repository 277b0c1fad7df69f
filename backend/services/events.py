"""Event ingestion: validate, de-duplicate, and hand over to the broker with a confirm.

An event is accepted only once RabbitMQ has confirmed its dispatch message (or, for a future
``sendAt``, once it is stored in PostgreSQL). The envelope freezes the rule that applied at
acceptance (template, channels, critical), so a later rule change never alters an accepted event.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy.ext.asyncio import AsyncSession

from backend.auth import Principal
from backend.broker import Broker
from backend.channels import Channel
from backend.config import Settings
from backend.db.history.base import DeliveryFilter, DeliveryRecord, HistoryStore
from backend.db.models import ScheduledEvent
from backend.db.repositories.events import ScheduledEventRepository
from backend.errors import HeraldError, NotFoundError, UnavailableError, ValidationError
from backend.services import history as history_service
from backend.services import rate_limits, task_messages
from backend.services import tenants as tenant_service
from backend.services import topics as topic_service
from backend.services.envelope import Envelope
from backend.services.event_types import RuleCache
from backend.services.payloads import check_payload
from backend.services.templates import LOCALE_RE
from backend.services.tenants import TenantCache

log = logging.getLogger(__name__)

TYPE_RE = re.compile(r"^[a-z][a-z0-9_.-]{0,99}$")
MAX_EVENTS_PER_CALL = 500
MAX_RECIPIENTS = 10_000
MAX_SEND_AHEAD = timedelta(days=366)


@dataclass(frozen=True, slots=True)
class EventData:
    type: str
    user_ids: Sequence[str] = ()
    payload: Any = None
    idempotency_key: str | None = None
    template_slug: str | None = None
    channels: Sequence[Channel] | None = None
    send_at: datetime | None = None
    locale: str | None = None
    topics: Sequence[str] = ()
    cancel_key: str | None = None
    tenant_id: str | None = None


@dataclass(frozen=True, slots=True)
class Accepted:
    event_id: str
    duplicate: bool
    scheduled_for: datetime | None = None


@dataclass
class Ingestion:
    """The clients ingestion needs, created once per process."""

    settings: Settings
    broker: Broker
    redis: Redis
    rules: RuleCache = field(default_factory=RuleCache)
    tenants: TenantCache = field(default_factory=TenantCache)
    leases: rate_limits.TokenLeases = field(default_factory=rate_limits.TokenLeases)


@dataclass(slots=True)
class _Prepared:
    envelope: Envelope
    idempotency_key: str | None
    due_at: datetime | None


async def _prepare(
    session: AsyncSession,
    *,
    actor: Principal,
    data: EventData,
    ingestion: Ingestion,
    index: str = "",
) -> _Prepared:
    prefix = index
    rules = ingestion.rules
    tenant_id = await tenant_service.tenant_for_write(
        session,
        actor=actor,
        requested=data.tenant_id,
        field=f"{prefix}tenantId",
        cache=ingestion.tenants,
    )
    if not TYPE_RE.match(data.type):
        raise ValidationError(
            f"'{data.type}' is not a valid event type name", field=f"{prefix}type"
        )
    user_ids = list(dict.fromkeys(u.strip() for u in data.user_ids))
    if not user_ids and not data.topics:
        raise ValidationError(
            "Give 1 or more user ids, or topics to send to", field=f"{prefix}userIds"
        )
    if any(not u or len(u) > 200 for u in user_ids):
        raise ValidationError("Give 1 or more non-empty user ids", field=f"{prefix}userIds")
    if len(user_ids) > MAX_RECIPIENTS:
        raise ValidationError(
            f"At most {MAX_RECIPIENTS} recipients per event; use a campaign for more",
            field=f"{prefix}userIds",
        )
    topics = (
        await topic_service.check_topics(session, data.topics, field=f"{prefix}topics")
        if data.topics
        else None
    )
    payload = check_payload(data.payload, field=f"{prefix}payload")
    if data.locale is not None and not LOCALE_RE.match(data.locale):
        raise ValidationError(f"'{data.locale}' is not a locale", field=f"{prefix}locale")

    rule = await rules.rule(session, data.type)
    critical = False
    throttle = None
    digest = None
    workflow_id: str | None = None
    cancels: tuple[str, ...] = ()
    if data.cancel_key is not None and not (1 <= len(data.cancel_key) <= 200):
        raise ValidationError("A cancel key is 1-200 characters", field=f"{prefix}cancelKey")
    if rule is not None:
        workflow = await rules.workflow(session, rule)
        if workflow is not None:
            cancels = workflow.cancels
            # An event that names its own template or channels is sent as it says, as before.
            if not workflow.plain and not data.template_slug and not data.channels:
                workflow_id = workflow.id
        if rule.validator is not None:
            rule.validator.check(payload, prefix=prefix)
        template_slug = data.template_slug or rule.template_slug
        channels = tuple(data.channels) if data.channels else rule.channels
        critical = rule.critical
        throttle = rule.throttle
        digest = rule.digest if not data.template_slug else None
    else:
        if not data.template_slug or not data.channels:
            raise ValidationError(
                f"Unknown event type '{data.type}': register it, or give templateSlug and channels",
                field=f"{prefix}type",
            )
        template_slug = data.template_slug
        channels = tuple(data.channels)
    if template_slug is None:
        raise ValidationError("No template for this event", field=f"{prefix}templateSlug")
    template = await rules.template(session, template_slug, tenant_id=tenant_id)
    if template is None:
        raise NotFoundError(
            f"No template with slug '{template_slug}'", field=f"{prefix}templateSlug"
        )
    missing = [c.value for c in channels if c not in template.channels]
    if missing:
        raise ValidationError(
            f"Template '{template_slug}' has no content for: {', '.join(missing)}",
            field=f"{prefix}channels",
        )

    now = datetime.now(UTC)
    due_at = None
    if data.send_at is not None:
        send_at = data.send_at if data.send_at.tzinfo else data.send_at.replace(tzinfo=UTC)
        if send_at > now + MAX_SEND_AHEAD:
            raise ValidationError("sendAt is more than a year ahead", field=f"{prefix}sendAt")
        if send_at > now + timedelta(seconds=1):
            due_at = send_at
    if data.idempotency_key is not None and not (1 <= len(data.idempotency_key) <= 200):
        raise ValidationError(
            "An idempotency key is 1-200 characters", field=f"{prefix}idempotencyKey"
        )
    envelope = Envelope(
        id=str(uuid.uuid4()),
        type=data.type,
        user_ids=tuple(user_ids),
        payload=payload,
        template_slug=template_slug,
        channels=tuple(dict.fromkeys(channels)),
        locale=data.locale,
        critical=critical,
        throttle=(throttle[0], throttle[1]) if throttle else None,
        digest=digest if not critical else None,
        created_at=now.isoformat(),
        send_at=due_at.isoformat() if due_at else None,
        actor=actor.user_id,
        campaign_id=None,
        # The worker expands the topics' members page by page, starting here.
        topics=tuple(topics) if topics else None,
        topic_page=0 if topics else None,
        topic_after="" if topics else None,
        workflow_id=workflow_id,
        cancel_key=data.cancel_key,
        cancels=cancels or None,
        tenant_id=tenant_id,
    )
    return _Prepared(envelope, data.idempotency_key, due_at)


def is_event_id(value: str) -> bool:
    """Whether ``value`` could name an event: every event id Herald gives out is a UUID."""
    try:
        return str(uuid.UUID(value)) == value
    except ValueError:
        return False


EVENT_DELIVERIES_SHOWN = 100


async def event_deliveries(
    session: AsyncSession, history: HistoryStore, *, event_id: str, tenant_id: str | None = None
) -> list[DeliveryRecord] | None:
    """An event's deliveries, newest first (the first 100), those its workflow runs made
    included (``tenant_id``: only if they are that tenant's); None when ``event_id`` is not an
    event id, so that no store is asked about a value that cannot be one."""
    if not is_event_id(event_id):
        return None
    filter = await history_service.with_workflow_steps(
        session, DeliveryFilter(event_id=event_id, tenant_id=tenant_id)
    )
    page = await history.find(filter, first=EVENT_DELIVERIES_SHOWN)
    return page.items


def _idempotency_redis_key(actor: Principal, key: str) -> str:
    # Scoped per caller: two services using the same key never collide.
    digest = hashlib.sha256(f"{actor.user_id}\x00{key}".encode()).hexdigest()
    return f"herald:idem:{digest}"


async def _claim(ingestion: Ingestion, actor: Principal, prepared: _Prepared) -> Accepted | None:
    """Claim the idempotency key; an Accepted(duplicate) when someone already did."""
    if prepared.idempotency_key is None:
        return None
    redis_key = _idempotency_redis_key(actor, prepared.idempotency_key)
    event_id = prepared.envelope.id
    try:
        claimed = await ingestion.redis.set(
            redis_key, event_id, nx=True, ex=ingestion.settings.idempotency_ttl_seconds
        )
        if claimed:
            return None
        existing = await ingestion.redis.get(redis_key)
    except (RedisError, OSError) as exc:
        raise UnavailableError(
            "Idempotency keys cannot be checked right now (Redis is unavailable); retry later"
        ) from exc
    if existing is None:  # expired between SET and GET: treat as new
        return await _claim(ingestion, actor, prepared)
    return Accepted(
        event_id=existing.decode() if isinstance(existing, bytes) else str(existing), duplicate=True
    )


async def _claim_many(
    ingestion: Ingestion, actor: Principal, batch: dict[int, _Prepared]
) -> dict[int, Accepted | HeraldError | None]:
    """:func:`_claim` for a batch, in input order, in two Redis round trips instead of one or
    two per event: every SET NX in one pipeline, then a GET for each key already taken. Two
    events of the batch with one key: the first claims it, the second is its duplicate."""
    keyed = [(i, p) for i, p in batch.items() if p.idempotency_key is not None]
    outcomes: dict[int, Accepted | HeraldError | None] = {i: None for i in batch}
    if not keyed:
        return outcomes
    keys = [_idempotency_redis_key(actor, p.idempotency_key or "") for _, p in keyed]
    ttl = ingestion.settings.idempotency_ttl_seconds
    try:
        async with ingestion.redis.pipeline(transaction=False) as pipe:
            for key, (_, p) in zip(keys, keyed, strict=True):
                pipe.set(key, p.envelope.id, nx=True, ex=ttl)
            claimed = await pipe.execute()
        taken = [n for n, ok in enumerate(claimed) if not ok]
        existing: list[Any] = []
        if taken:
            async with ingestion.redis.pipeline(transaction=False) as pipe:
                for n in taken:
                    pipe.get(keys[n])
                existing = await pipe.execute()
    except (RedisError, OSError) as exc:
        error = UnavailableError(
            "Idempotency keys cannot be checked right now (Redis is unavailable); retry later"
        )
        error.__cause__ = exc
        return {i: (error if p.idempotency_key is not None else None) for i, p in batch.items()}
    for n, value in zip(taken, existing, strict=True):
        i, p = keyed[n]
        if value is None:  # expired between SET and GET: claim it on its own
            try:
                outcomes[i] = await _claim(ingestion, actor, p)
            except HeraldError as exc:
                outcomes[i] = exc
            continue
        outcomes[i] = Accepted(
            event_id=value.decode() if isinstance(value, bytes) else str(value), duplicate=True
        )
    return outcomes


async def _release(ingestion: Ingestion, actor: Principal, prepared: _Prepared) -> None:
    if prepared.idempotency_key is None:
        return
    try:
        await ingestion.redis.delete(_idempotency_redis_key(actor, prepared.idempotency_key))
    except (RedisError, OSError):
        log.warning("could not release idempotency key for event %s", prepared.envelope.id)


async def _hand_over(session: AsyncSession, ingestion: Ingestion, prepared: _Prepared) -> Accepted:
    envelope = prepared.envelope
    if prepared.due_at is not None:
        await ScheduledEventRepository(session).add(
            ScheduledEvent(
                id=uuid.UUID(envelope.id), due_at=prepared.due_at, envelope=envelope.to_wire()
            )
        )
        return Accepted(envelope.id, duplicate=False, scheduled_for=prepared.due_at)
    await task_messages.dispatch(envelope).publish(ingestion.broker)
    return Accepted(envelope.id, duplicate=False)


async def accept_event(
    session: AsyncSession, *, actor: Principal, data: EventData, ingestion: Ingestion
) -> Accepted:
    """Validate one event and hand it over; see the module docstring for when it is accepted."""
    await rate_limits.check_event_rate(
        ingestion.redis,
        settings=ingestion.settings,
        caller=actor.user_id,
        events=1,
        leases=ingestion.leases,
    )
    prepared = await _prepare(session, actor=actor, data=data, ingestion=ingestion)
    duplicate = await _claim(ingestion, actor, prepared)
    if duplicate is not None:
        return duplicate
    try:
        return await _hand_over(session, ingestion, prepared)
    except BaseException:
        await _release(ingestion, actor, prepared)
        raise


async def accept_events(
    session: AsyncSession, *, actor: Principal, items: Sequence[EventData], ingestion: Ingestion
) -> list[Accepted | HeraldError]:
    """Validate and hand over up to 500 events; each gets its own result, in input order.

    Publishes go out concurrently and are confirmed together, which is what makes bulk ingest
    fast; scheduled ones are stored in this unit of work.
    """
    if len(items) > MAX_EVENTS_PER_CALL:
        raise ValidationError(f"At most {MAX_EVENTS_PER_CALL} events per call", field="inputs")
    await rate_limits.check_event_rate(
        ingestion.redis,
        settings=ingestion.settings,
        caller=actor.user_id,
        events=len(items),
        leases=ingestion.leases,
    )
    results: list[Accepted | HeraldError | None] = [None] * len(items)
    prepared: dict[int, _Prepared] = {}
    for i, data in enumerate(items):
        try:
            prepared[i] = await _prepare(
                session, actor=actor, data=data, ingestion=ingestion, index=f"inputs[{i}]."
            )
        except HeraldError as exc:
            results[i] = exc
    to_send: list[int] = []
    for i, claim in (await _claim_many(ingestion, actor, prepared)).items():
        if claim is None:
            to_send.append(i)
        else:
            results[i] = claim
    scheduled = [i for i in to_send if prepared[i].due_at is not None]
    immediate = [i for i in to_send if prepared[i].due_at is None]
    for i in scheduled:
        try:
            results[i] = await _hand_over(session, ingestion, prepared[i])
        except HeraldError as exc:
            results[i] = exc
            await _release(ingestion, actor, prepared[i])
    outcomes = await asyncio.gather(
        *(_hand_over(session, ingestion, prepared[i]) for i in immediate), return_exceptions=True
    )
    for i, outcome in zip(immediate, outcomes, strict=True):
        if isinstance(outcome, HeraldError):
            results[i] = outcome
            await _release(ingestion, actor, prepared[i])
        elif isinstance(outcome, BaseException):
            await _release(ingestion, actor, prepared[i])
            raise outcome
        else:
            results[i] = outcome
    return [r for r in results if r is not None]


async def release_due_events(session: AsyncSession, *, broker: Broker, limit: int = 500) -> int:
    """Publish the scheduled events that are due, then delete them (in the caller's unit of
    work). A crash between the publish and the commit re-publishes them, which dispatch
    tolerates: delivery ids are derived from the event."""
    repo = ScheduledEventRepository(session)
    due = await repo.take_due(datetime.now(UTC), limit)
    await asyncio.gather(*(task_messages.dispatch(e.envelope).publish(broker) for e in due))
    await repo.delete(due)
    return len(due)
