"""The audit log: every mutation made by an admin or a manager, and every attempt at an
admin- or manager-only mutation by someone else who holds a valid token.

Each entry says who (the token's subject and roles), what (the GraphQL operation and a summary
of its arguments), how it ended (``ok`` or the error code) and when. The summary never holds
secrets (tokens, keys, passwords) or message content (subjects, bodies, payloads, variables):
those are replaced by their size. A successful mutation's entry is written in the mutation's
own transaction, so the change and its entry commit or roll back together; a failed one's entry
is written on its own after the rollback.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from backend.auth import Principal, Role
from backend.db.models import AuditEntry
from backend.db.repositories.audit import AuditRepository
from backend.errors import ValidationError
from backend.services.pagination import Page, check_page_size, decode_cursor, encode_cursor

AUDITED_ROLES = frozenset({Role.ADMIN, Role.MANAGER})
OK = "ok"
MAX_STRING = 200
MAX_ITEMS = 20
MAX_DEPTH = 4
MAX_SUMMARY_BYTES = 8_192

_SECRET = re.compile(r"(?i)(token|secret|password|passwd|credential|auth|p256dh|keys?$)")
_CONTENT = re.compile(r"(?i)^(subject|title|body|html|text|payload|variables|data|message)$")


def is_audited(principal: Principal, required: frozenset[Role] | None) -> bool:
    """Whether a mutation by ``principal`` that needs ``required`` roles is recorded."""
    if principal.has_any(AUDITED_ROLES):
        return True
    return required is not None and bool(required) and required <= AUDITED_ROLES


def _size(value: Any) -> str:
    if isinstance(value, str):
        return f"[{len(value)} characters]"
    if isinstance(value, list | tuple | Mapping):
        return f"[{len(value)} items]"
    return "[omitted]"


def _clean(text: str) -> str:
    # PostgreSQL's JSONB takes neither NUL nor lone surrogates.
    text = text.replace("\x00", "")
    text = text.encode("utf-8", "replace").decode("utf-8")
    return text if len(text) <= MAX_STRING else text[:MAX_STRING] + "…"


def _summarise(value: Any, depth: int) -> Any:
    if isinstance(value, str):
        return _clean(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    if depth >= MAX_DEPTH:
        return _size(value)
    if isinstance(value, Mapping):
        summary: dict[str, Any] = {}
        for key, item in list(value.items())[:MAX_ITEMS]:
            name = _clean(str(key))
            if _SECRET.search(name):
                summary[name] = "[redacted]"
            elif _CONTENT.match(name):
                summary[name] = _size(item)
            else:
                summary[name] = _summarise(item, depth + 1)
        if len(value) > MAX_ITEMS:
            summary["…"] = f"{len(value) - MAX_ITEMS} more"
        return summary
    if isinstance(value, list | tuple):
        items = [_summarise(v, depth + 1) for v in value[:MAX_ITEMS]]
        if len(value) > MAX_ITEMS:
            items.append(f"… {len(value) - MAX_ITEMS} more")
        return items
    return _clean(str(value))


def summarise_arguments(arguments: Mapping[str, Any]) -> dict[str, Any]:
    """The arguments of a mutation, fit for the audit log (see the module docstring)."""
    summary = _summarise(arguments, 0)
    assert isinstance(summary, dict)
    if len(orjson.dumps(summary)) > MAX_SUMMARY_BYTES:
        return {"…": f"arguments too large to summarise ({', '.join(sorted(arguments))[:200]})"}
    return summary


async def record(
    session: AsyncSession,
    *,
    actor: Principal,
    operation: str,
    arguments: Mapping[str, Any],
    outcome: str = OK,
    error: str | None = None,
) -> None:
    """Add an entry in the caller's unit of work (flushed, not committed)."""
    await AuditRepository(session).add(
        AuditEntry(
            actor=actor.user_id,
            actor_roles=sorted(actor.roles | actor.scopes),
            operation=operation,
            arguments=summarise_arguments(arguments),
            outcome=outcome,
            error=_clean(error) if error else None,
        )
    )


@dataclass(frozen=True, slots=True)
class AuditFilter:
    actor: str | None = None
    operation: str | None = None
    since: datetime | None = None
    until: datetime | None = None


async def list_entries(
    session: AsyncSession, *, filter: AuditFilter, first: int, after: str | None
) -> Page[AuditEntry]:
    """A page of entries, newest first."""
    limit = check_page_size(first)
    raw = decode_cursor("audit", after)
    before_id = None
    if raw is not None:
        if not raw.isdigit():
            raise ValidationError("The cursor is not valid", field="after")
        before_id = int(raw)
    if filter.since and filter.until and filter.since >= filter.until:
        raise ValidationError("'since' must be before 'until'", field="filter.since")
    rows = await AuditRepository(session).page(
        actor=filter.actor,
        operation=filter.operation,
        since=filter.since,
        until=filter.until,
        before_id=before_id,
        limit=limit + 1,
    )
    items = [(encode_cursor("audit", str(r.id)), r) for r in rows[:limit]]
    return Page(items=items, has_next_page=len(rows) > limit)
