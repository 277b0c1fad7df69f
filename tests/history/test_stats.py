"""Delivery counts per time bucket and dimension (``delivery_stats``): the same seeded history
gives the same numbers from the PostgreSQL store (its SQL, run on the real server) and from
the MongoDB store's aggregation pipeline (run through mongomock's engine: no server here)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import mongomock
import pytest

from backend.channels import Channel
from backend.db.history.base import (
    Attempt,
    DeliveryRecord,
    DeliveryStatus,
    HistoryStore,
    StatsDimension,
    StatsQuery,
    StatsRow,
)
from backend.db.history.mongo import new_document, stats_pipeline, stats_rows
from tests.history.conftest import minutes

D = StatsDimension
S = DeliveryStatus


def delivery(
    id: str,
    at: float,
    channel: Channel,
    status: DeliveryStatus,
    event_type: str,
    providers: list[tuple[str, bool]],
    campaign_id: str | None = None,
) -> DeliveryRecord:
    """A delivery created ``at`` minutes after T0, tried once per (provider, succeeded)."""
    return DeliveryRecord(
        id=id,
        event_id=f"e-{id}",
        event_type=event_type,
        user_id="u-1",
        channel=channel,
        created_at=minutes(at),
        updated_at=minutes(at + 0.5),
        status=status,
        campaign_id=campaign_id,
        attempts=[
            Attempt(n, minutes(at), provider=p, error=None if ok else "refused")
            for n, (p, ok) in enumerate(providers, start=1)
        ],
    )


def seeded_history() -> list[DeliveryRecord]:
    """Seven deliveries in the hour from T0, one just before it and one at its end."""
    return [
        delivery("s1", 1, Channel.EMAIL, S.SENT, "user_registered", [("smtp", True)]),
        delivery("s2", 4, Channel.EMAIL, S.SENT, "movie_added",
                 [("smtp", False), ("smtp-backup", True)], "c1"),
        delivery("s3", 7, Channel.EMAIL, S.FAILED, "movie_added", [("smtp", False)], "c1"),
        delivery("s4", 12, Channel.SMS, S.DEAD, "user_registered", [("twilio", False)] * 3),
        delivery("s5", 13, Channel.SMS, S.SENT, "movie_added", [("twilio", True)], "c1"),
        delivery("s6", 20, Channel.PUSH, S.SKIPPED, "user_registered", []),
        delivery("s7", 59, Channel.IN_APP, S.SENT, "movie_added", [("redis", True)], "c2"),
        delivery("s8", 60, Channel.EMAIL, S.SENT, "movie_added", [("smtp", True)]),
        delivery("s9", -1, Channel.EMAIL, S.SENT, "movie_added", [("smtp", True)]),
    ]  # fmt: skip


HOUR = (minutes(0), minutes(60))
FIFTEEN = timedelta(minutes=15)

# (test id, query, the rows expected, in any order) over seeded_history()
CASES: list[tuple[str, StatsQuery, list[StatsRow]]] = [
    ("channel and status per quarter hour",
     StatsQuery(*HOUR, bucket=FIFTEEN, group_by=(D.CHANNEL, D.STATUS)),
     [StatsRow(minutes(0), ("email", "sent"), 2), StatsRow(minutes(0), ("email", "failed"), 1),
      StatsRow(minutes(0), ("sms", "dead"), 1), StatsRow(minutes(0), ("sms", "sent"), 1),
      StatsRow(minutes(15), ("push", "skipped"), 1),
      StatsRow(minutes(45), ("in_app", "sent"), 1)]),
    ("provider of the last attempt and status",
     StatsQuery(*HOUR, group_by=(D.PROVIDER, D.STATUS)),
     [StatsRow(None, ("smtp", "sent"), 1), StatsRow(None, ("smtp", "failed"), 1),
      StatsRow(None, ("smtp-backup", "sent"), 1), StatsRow(None, ("twilio", "dead"), 1),
      StatsRow(None, ("twilio", "sent"), 1), StatsRow(None, (None, "skipped"), 1),
      StatsRow(None, ("redis", "sent"), 1)]),
    ("event type",
     StatsQuery(*HOUR, group_by=(D.EVENT_TYPE,)),
     [StatsRow(None, ("movie_added",), 4), StatsRow(None, ("user_registered",), 3)]),
    ("campaign",
     StatsQuery(*HOUR, group_by=(D.CAMPAIGN,)),
     [StatsRow(None, ("c1",), 3), StatsRow(None, ("c2",), 1), StatsRow(None, (None,), 3)]),
    ("buckets align on the start, empty ones are absent",
     StatsQuery(minutes(10), minutes(70), bucket=FIFTEEN),
     [StatsRow(minutes(10), (), 3), StatsRow(minutes(55), (), 2)]),
    ("a total", StatsQuery(*HOUR), [StatsRow(None, (), 7)]),
    ("an empty window", StatsQuery(minutes(30), minutes(45), bucket=FIFTEEN), []),
    ("an empty window without buckets", StatsQuery(minutes(30), minutes(45)), []),
]  # fmt: skip


def ordered(rows: list[StatsRow]) -> list[tuple[Any, ...]]:
    return sorted(
        (
            (r.bucket_start or datetime.min).isoformat(),
            [(k is None, k or "") for k in r.keys],
            r.count,
        )
        for r in rows
    )


@pytest.mark.parametrize(("query", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
async def test_a_store_counts_the_seeded_history(
    store: HistoryStore, query: StatsQuery, expected: list[StatsRow]
) -> None:
    await store.add(seeded_history())
    rows = await store.delivery_stats(query)
    assert ordered(rows) == ordered(expected)
    assert all(r.bucket_start is None or r.bucket_start.utcoffset() == timedelta(0) for r in rows)


@pytest.fixture
def collection() -> Iterator[Any]:
    client: Any = mongomock.MongoClient(tz_aware=True)
    yield client.herald.deliveries
    client.close()


@pytest.mark.parametrize(("query", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_the_mongo_pipeline_counts_the_seeded_history(
    collection: Any, query: StatsQuery, expected: list[StatsRow]
) -> None:
    collection.insert_many([new_document(record) for record in seeded_history()])
    rows = stats_rows(list(collection.aggregate(stats_pipeline(query))), query)
    assert ordered(rows) == ordered(expected)


async def test_counts_follow_a_transition(store: HistoryStore) -> None:
    await store.add(seeded_history())
    query = StatsQuery(*HOUR, group_by=(D.STATUS,))
    before = {r.keys[0]: r.count for r in await store.delivery_stats(query)}
    assert await store.transition("s3", S.DEAD, at=minutes(8), expected=frozenset({S.FAILED}))
    after = {r.keys[0]: r.count for r in await store.delivery_stats(query)}
    assert before == {"sent": 4, "failed": 1, "dead": 1, "skipped": 1}
    assert after == {"sent": 4, "dead": 2, "skipped": 1}
