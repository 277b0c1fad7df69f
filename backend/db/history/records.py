"""What both history stores do the same way to the records they store."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from backend.db.history.base import DeliveryRecord, StatusChange

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
