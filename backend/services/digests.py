"""Digests: events of a digested type are collected per user (and key) and sent as one message.

An event type's digest rule is a window: ``every_seconds`` (fixed windows aligned to the epoch)
or ``cron`` (read in each user's time zone: "0 9 * * *" is 09:00 wherever the user is), with an
optional ``key`` (a payload path, e.g. ``series.id``: one digest per key) and ``template_slug``
(what the digest renders with; the type's template otherwise). Each user may choose their own
cadence per event type in their preferences: ``instant`` (no digest), ``hourly``, ``daily``
(09:00) or ``weekly`` (Monday 09:00), in their time zone. Critical events are never collected.

Collecting writes one row per (event, user) to PostgreSQL; ``release_due_digests`` (run every
second by beat) turns each due (type, user, key, time) group into one event whose payload is
``{"events": [payload, ...], "count": n, "key": key}``, with an id derived from the group, so a
release done twice dispatches nothing twice.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy.ext.asyncio import AsyncSession

from backend.broker import Broker
from backend.db.models import DigestItem, UserPreferences
from backend.db.repositories.digests import DigestRepository
from backend.errors import ValidationError
from backend.services import task_messages
from backend.services.calendars import check_cron, next_cron_time
from backend.services.envelope import Envelope

log = logging.getLogger(__name__)

_NAMESPACE = uuid.UUID("3c0e9a57-1b4f-4e6a-8d2c-7f5b9e1a2d34")
CADENCES = ("instant", "hourly", "daily", "weekly")
_CADENCE_CRON = {"hourly": "0 * * * *", "daily": "0 9 * * *", "weekly": "0 9 * * 1"}
MAX_EVENTS_PER_DIGEST = 100


def check_rule(rule: Mapping[str, Any]) -> dict[str, Any]:
    """A digest rule as stored, or a ValidationError naming the field."""
    every = rule.get("every_seconds")
    cron = rule.get("cron")
    if (every is None) == (cron is None):
        raise ValidationError("A digest has everySeconds or cron (one of them)", field="digest")
    if every is not None and not 60 <= int(every) <= 31 * 86_400:
        raise ValidationError("A digest window is 60 s to 31 days", field="digest.everySeconds")
    if cron is not None:
        cron = check_cron(str(cron), field="digest.cron")
    key = rule.get("key")
    if key is not None and not (0 < len(key) <= 100):
        raise ValidationError("A digest key is a payload path", field="digest.key")
    return {
        "every_seconds": int(every) if every is not None else None,
        "cron": cron,
        "key": key,
        "template_slug": rule.get("template_slug"),
    }


def _zone(prefs: UserPreferences | None) -> ZoneInfo:
    try:
        return ZoneInfo((prefs.timezone if prefs else None) or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def due_at(
    rule: Mapping[str, Any], event_type: str, prefs: UserPreferences | None, now: datetime
) -> datetime | None:
    """When the digest this event joins for this user goes out; None sends it at once."""
    cadence = (prefs.digest_cadence or {}).get(event_type) if prefs is not None else None
    cron = _CADENCE_CRON.get(cadence) if cadence else None
    if cadence == "instant":
        return None
    if cron is None and rule.get("every_seconds"):
        step = int(rule["every_seconds"])
        start = int(now.timestamp()) // step * step
        return datetime.fromtimestamp(start + step, UTC)
    cron = cron or rule.get("cron")
    if cron is None:
        return None
    nxt = next_cron_time(cron, now.astimezone(_zone(prefs)))
    if nxt is None:
        # Saved before such crons were refused: sent at once rather than failing the
        # dispatch (which would be retried for ever, delivering nothing).
        log.warning("digest of '%s': cron '%s' never occurs; sent at once", event_type, cron)
        return None
    return nxt.astimezone(UTC)


def _key(payload: Any, path: str | None) -> str:
    if not path:
        return ""
    value: Any = payload
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return "" if value is None else str(value)[:200]


async def collect(
    session: AsyncSession,
    *,
    envelope: Envelope,
    users: Mapping[str, datetime],
) -> None:
    """Keep the event for each user's digest due at the given time (the caller commits)."""
    assert envelope.digest is not None and envelope.created_at is not None
    rule = envelope.digest
    payload = envelope.payload or {}
    key = _key(payload, rule.get("key"))
    # Accepted at: a digest lists its events in the order they were accepted.
    accepted = datetime.fromisoformat(envelope.created_at)
    # Kept without the recipients and the payload, which the item holds apart.
    kept = envelope.without_recipients().to_wire()
    del kept["payload"]
    await DigestRepository(session).add(
        [
            DigestItem(
                event_type=envelope.type,
                user_id=user_id,
                digest_key=key,
                due_at=when,
                event_id=envelope.id,
                envelope=kept,
                payload=payload,
                created_at=accepted,
            )
            for user_id, when in users.items()
        ]
    )


def digest_envelope(items: Sequence[DigestItem]) -> Envelope:
    """One event for a due group of collected items (same type, user, key, time and tenant)."""
    first = items[0]
    kept = Envelope.from_wire(first.envelope)
    rule = kept.digest or {}
    group = f"{first.event_type}/{first.user_id}/{first.digest_key}/{first.due_at.isoformat()}"
    if kept.tenant_id is not None:
        # Two tenants' events to one user id are two digests, each with its tenant's template.
        group += f"/{kept.tenant_id}"
    events = [i.payload for i in items[:MAX_EVENTS_PER_DIGEST]]
    return dataclasses.replace(
        kept,
        id=str(uuid.uuid5(_NAMESPACE, group)),
        user_ids=(first.user_id,),
        payload={"events": events, "count": len(items), "key": first.digest_key or None},
        template_slug=rule.get("template_slug") or kept.template_slug,
        digest=None,
        digest_of=tuple(i.event_id for i in items),
        created_at=datetime.now(UTC).isoformat(),
    )


async def release_due_digests(session: AsyncSession, *, broker: Broker, limit: int = 1000) -> int:
    """Dispatch the digests that are due and forget their items (in the caller's unit of
    work: a crash before the commit releases them again, under the same event ids)."""
    repo = DigestRepository(session)
    due = await repo.take_due(datetime.now(UTC), limit)
    groups: dict[tuple[str, str, str, datetime, Any], list[DigestItem]] = defaultdict(list)
    for item in due:
        tenant = item.envelope.get("tenant_id")
        groups[(item.event_type, item.user_id, item.digest_key, item.due_at, tenant)].append(item)
    for items in groups.values():
        envelope = digest_envelope(sorted(items, key=lambda i: i.created_at))
        await task_messages.dispatch(envelope).publish(broker)
    await repo.delete([i.id for i in due])
    return len(groups)
