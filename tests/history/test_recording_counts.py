"""A batch's status changes are counted in ``herald_deliveries_total`` once each, per channel:
those the store made, stored or unstored, and not those it refused."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import REGISTRY
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.channels import Channel
from backend.db.history.base import DeliveryRecord, DeliveryStatus, StatusChange
from backend.services.deliveries.records import RecordingHistory
from tests.history.conftest import empty_postgres_store


def counted(channel: Channel, status: DeliveryStatus) -> float:
    value = REGISTRY.get_sample_value(
        "herald_deliveries_total", {"channel": channel.value, "status": status.value}
    )
    return value or 0.0


def record(id: str, channel: Channel, at: datetime, status: DeliveryStatus) -> DeliveryRecord:
    return DeliveryRecord(
        id=id,
        event_id="e-counts",
        event_type="counted",
        user_id=f"user-{id}",
        channel=channel,
        created_at=at,
        updated_at=at,
        status=status,
        timeline=[StatusChange(status, at)],
    )


async def test_a_batch_counts_each_change_it_made_once_per_channel(engine: AsyncEngine):
    store = await empty_postgres_store(engine)
    at = datetime.now(UTC) - timedelta(minutes=1)
    stored = [
        record("c-1", Channel.EMAIL, at, DeliveryStatus.SENDING),
        record("c-2", Channel.EMAIL, at, DeliveryStatus.SENDING),
        record("c-3", Channel.SMS, at, DeliveryStatus.SENDING),
        # Already sent: a move from sending to sent does not apply to it.
        record("c-4", Channel.SMS, at, DeliveryStatus.SENT),
    ]
    unstored = [
        record("c-5", Channel.IN_APP, at, DeliveryStatus.SENDING),
        record("c-6", Channel.IN_APP, at, DeliveryStatus.SENDING),
    ]
    await store.add(stored)
    records = {r.id: r for r in [*stored, *unstored]}
    history = RecordingHistory(store, records, unstored=["c-5", "c-6"])
    channels = (Channel.EMAIL, Channel.SMS, Channel.IN_APP)
    before = {c: counted(c, DeliveryStatus.SENT) for c in channels}

    changed = await history.transition_many(
        list(records),
        DeliveryStatus.SENT,
        at=datetime.now(UTC),
        expected=frozenset({DeliveryStatus.SENDING}),
    )

    assert changed == {"c-1", "c-2", "c-3", "c-5", "c-6"}
    grown = {c: counted(c, DeliveryStatus.SENT) - before[c] for c in channels}
    assert grown == {Channel.EMAIL: 2, Channel.SMS: 1, Channel.IN_APP: 2}
    # Each change made is announced, once.
    assert sorted(u["id"] for u in history.updates) == ["c-1", "c-2", "c-3", "c-5", "c-6"]

    # A single change is counted as well.
    before_one = counted(Channel.SMS, DeliveryStatus.FAILED)
    assert await history.transition(
        "c-3",
        DeliveryStatus.FAILED,
        at=datetime.now(UTC),
        expected=frozenset({DeliveryStatus.SENT}),
    )
    assert counted(Channel.SMS, DeliveryStatus.FAILED) - before_one == 1


def test_evolved_is_dataclasses_replace_for_every_field() -> None:
    """``DeliveryRecord.evolved`` builds the copy positionally: a field added out of order (or
    keyword-only) must not shift the others."""
    now = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
    record = DeliveryRecord(
        id="e:u:in_app",
        event_id="e",
        event_type="movie_added",
        user_id="u",
        channel=Channel.IN_APP,
        created_at=now,
        updated_at=now,
        timeline=[StatusChange(DeliveryStatus.QUEUED, now)],
        data={"movie_id": 7},
    )
    original = dataclasses.replace(record)
    for number, f in enumerate(dataclasses.fields(DeliveryRecord)):
        changed = {f.name: f"value {number}"}
        copy = record.evolved(**changed)
        assert copy == dataclasses.replace(record, **changed)
        assert copy is not record and record == original  # the record itself is left as it was
    assert record.evolved() == record
    with pytest.raises(AttributeError):
        record.evolved(no_such_field=1)
