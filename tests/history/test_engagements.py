"""Opens and clicks (email tracking) in the history store contract: every store
(tests/history/conftest.py ``store``) appends them without touching the delivery's status or
timeline, caps them, and counts them per event."""

from __future__ import annotations

import pytest

from backend.channels import Channel
from backend.db.history.base import (
    MAX_ENGAGEMENTS,
    DeliveryFilter,
    DeliveryStatus,
    Engagement,
    EngagementCounts,
    EngagementKind,
    HistoryStore,
)
from tests.history.conftest import make_delivery, minutes

OPENED, CLICKED = EngagementKind.OPENED, EngagementKind.CLICKED


async def test_an_open_and_a_click_are_added_and_the_status_stays(store: HistoryStore) -> None:
    await store.add([make_delivery("d-1", status=DeliveryStatus.SENT)])
    before = await store.get("d-1")
    assert before is not None

    assert await store.add_engagement("d-1", Engagement(OPENED, minutes(10)))
    click = Engagement(CLICKED, minutes(11), url="https://example.org/p?q=1")
    assert await store.add_engagement("d-1", click)

    after = await store.get("d-1")
    assert after is not None
    assert after.engagements == [Engagement(OPENED, minutes(10)), click]
    assert (after.status, after.timeline, after.updated_at) == (
        DeliveryStatus.SENT,
        before.timeline,
        before.updated_at,
    )


async def test_only_an_existing_email_delivery_takes_an_engagement(store: HistoryStore) -> None:
    await store.add([make_delivery("d-sms", channel=Channel.SMS, status=DeliveryStatus.SENT)])

    assert not await store.add_engagement("d-sms", Engagement(OPENED, minutes(1)))
    assert not await store.add_engagement("d-missing", Engagement(OPENED, minutes(1)))
    sms = await store.get("d-sms")
    assert sms is not None and sms.engagements == []


async def test_a_delivery_keeps_at_most_the_cap(store: HistoryStore) -> None:
    await store.add([make_delivery("d-1", status=DeliveryStatus.SENT)])
    for n in range(MAX_ENGAGEMENTS):
        assert await store.add_engagement("d-1", Engagement(OPENED, minutes(n)))

    assert not await store.add_engagement("d-1", Engagement(OPENED, minutes(500)))
    record = await store.get("d-1")
    assert record is not None and len(record.engagements) == MAX_ENGAGEMENTS


async def test_engagement_counts_count_events_and_deliveries(store: HistoryStore) -> None:
    await store.add(
        [
            make_delivery("d-1", event_id="e-run", status=DeliveryStatus.SENT),
            make_delivery("d-2", event_id="e-run", status=DeliveryStatus.SENT),
            make_delivery("d-3", event_id="e-run", status=DeliveryStatus.SENT),
            make_delivery("d-other", event_id="e-other", status=DeliveryStatus.SENT),
        ]
    )
    for delivery_id, kind in [
        ("d-1", OPENED),
        ("d-1", OPENED),
        ("d-1", CLICKED),
        ("d-2", OPENED),
        ("d-2", CLICKED),
        ("d-2", CLICKED),
        ("d-2", CLICKED),
        ("d-other", OPENED),
    ]:
        url = "https://example.org/" if kind is CLICKED else None
        assert await store.add_engagement(delivery_id, Engagement(kind, minutes(5), url=url))

    counts = await store.engagement_counts(DeliveryFilter(event_id="e-run"))

    assert counts == EngagementCounts(opens=3, unique_opens=2, clicks=4, unique_clicks=2)
    assert await store.engagement_counts(DeliveryFilter(event_id="e-none")) == EngagementCounts()


@pytest.mark.parametrize("kind", [OPENED, CLICKED])
async def test_counts_of_one_kind_leave_the_other_at_zero(
    store: HistoryStore, kind: EngagementKind
) -> None:
    await store.add([make_delivery("d-1", event_id="e-1", status=DeliveryStatus.SENT)])
    await store.add_engagement("d-1", Engagement(kind, minutes(1)))

    counts = await store.engagement_counts(DeliveryFilter(event_id="e-1"))

    opened = kind is OPENED
    assert counts == EngagementCounts(
        opens=int(opened),
        unique_opens=int(opened),
        clicks=int(not opened),
        unique_clicks=int(not opened),
    )
