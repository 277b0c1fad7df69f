"""What both history stores do the same way: preparing new records, and cutting pages."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from backend.db.history.base import DeliveryRecord, HistoryPage, StatusChange, history_cursor
from backend.errors import ValidationError


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


def check_first(first: int) -> int:
    """``first`` when it asks for at least one record. The upper bound is the caller's
    (GraphQL pages are capped there); internal readers such as exports may ask for more."""
    if first < 1:
        raise ValidationError("'first' must be at least 1", field="first")
    return first


def page_of(rows: Sequence[DeliveryRecord], first: int) -> HistoryPage:
    """The page for ``rows`` read in order with a limit of ``first + 1``: the extra row only
    says that another page follows."""
    items = list(rows[:first])
    end_cursor = history_cursor(items[-1]) if items else None
    return HistoryPage(items=items, end_cursor=end_cursor, has_next_page=len(rows) > first)
