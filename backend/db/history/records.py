"""What both history stores do the same way to the records they store."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from backend.db.history.base import (
    Attempt,
    DeliveryRecord,
    DeliveryStatus,
    Engagement,
    EngagementKind,
    StatusChange,
)

# What a forgotten user's timeline reasons and attempt errors become: they may quote an address
# (an SMTP refusal names its recipient), and a scrubbed failed attempt must still read as failed.
SCRUBBED = "[removed]"


def as_utc(value: datetime) -> datetime:
    """``value`` in UTC. A naive datetime is taken to be UTC already: that is what
    ``datetime.utcnow()`` callers mean, and both stores hold instants, not wall-clock times."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def unique_by_id(records: Sequence[DeliveryRecord]) -> list[DeliveryRecord]:
    """One record per id, the first one given winning, as it would against a stored record."""
    seen: set[str] = set()
    unique: list[DeliveryRecord] = []
    for record in records:
        if record.id not in seen:
            seen.add(record.id)
            unique.append(record)
    return unique


def initial_timeline(record: DeliveryRecord) -> list[StatusChange]:
    """The timeline ``add`` stores: the record's own, or else its status at ``created_at``.

    A record may arrive with a timeline (a delivery skipped at dispatch carries its reason
    there); the caller's record is never modified.
    """
    return record.timeline or [StatusChange(record.status, record.created_at)]


# How a store reads back an instant it wrote: MongoDB returns a datetime, JSONB an ISO string.
ReadInstant = Callable[[Any], datetime]


def change_from_stored(entry: Mapping[str, Any], instant: ReadInstant) -> StatusChange:
    """A timeline entry as a store keeps it (``status``, ``at``, optional ``reason``)."""
    return StatusChange(
        status=DeliveryStatus(entry["status"]), at=instant(entry["at"]), reason=entry.get("reason")
    )


def attempt_from_stored(entry: Mapping[str, Any], instant: ReadInstant) -> Attempt:
    """An attempt as a store keeps it (``number``, ``at``, optional ``provider``, ``error``)."""
    return Attempt(
        number=entry["number"],
        at=instant(entry["at"]),
        provider=entry.get("provider"),
        error=entry.get("error"),
    )


def engagement_from_stored(entry: Mapping[str, Any], instant: ReadInstant) -> Engagement:
    """An open or click as a store keeps it (``kind``, ``at``, optional ``url``)."""
    return Engagement(
        kind=EngagementKind(entry["kind"]), at=instant(entry["at"]), url=entry.get("url")
    )
