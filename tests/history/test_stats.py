"""Delivery counts per time bucket and dimension (``delivery_stats``): the same seeded history
gives the same numbers from the PostgreSQL store (its SQL, run on the real server) and from
the MongoDB store's aggregation pipeline (run through mongomock's engine: no server here)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import aio_pika
import mongomock
import pytest
from aio_pika.abc import AbstractIncomingMessage
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from backend.channels import Channel
from backend.config import Settings
from backend.db.history.base import (
    DeliveryRecord,
    DeliveryStatus,
    HistoryStore,
    StatsDimension,
    StatsQuery,
    StatsRow,
)
from backend.db.history.mongo import new_document, stats_pipeline, stats_rows
from backend.db.history.postgres import PostgresHistoryStore
from backend.db.models import DeadLetter
from backend.db.repositories.dead_letters import DeadLetterRepository
from backend.queues import DEAD_LETTER_QUEUE, WEBHOOKS, WORK_QUEUES
from tests.conftest import TEST_RABBITMQ_URL, GraphQL
from tests.factories import token_for, tried_delivery
from tests.history.conftest import minutes

D = StatsDimension
S = DeliveryStatus


def seeded_history() -> list[DeliveryRecord]:
    """Seven deliveries in the hour from T0, one just before it and one at its end."""
    d, C = tried_delivery, Channel
    return [
        d("s1", minutes(1), C.EMAIL, S.SENT, "user_registered", [("smtp", True)]),
        d("s2", minutes(4), C.EMAIL, S.SENT, "movie_added",
          [("smtp", False), ("smtp-backup", True)], "c1"),
        d("s3", minutes(7), C.EMAIL, S.FAILED, "movie_added", [("smtp", False)], "c1"),
        d("s4", minutes(12), C.SMS, S.DEAD, "user_registered", [("twilio", False)] * 3),
        d("s5", minutes(13), C.SMS, S.SENT, "movie_added", [("twilio", True)], "c1"),
        d("s6", minutes(20), C.PUSH, S.SKIPPED, "user_registered", []),
        d("s7", minutes(59), C.IN_APP, S.SENT, "movie_added", [("redis", True)], "c2"),
        d("s8", minutes(60), C.EMAIL, S.SENT, "movie_added", [("smtp", True)]),
        d("s9", minutes(-1), C.EMAIL, S.SENT, "movie_added", [("smtp", True)]),
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


# --- over GraphQL: deliveryStats and queueStats -------------------------------------------

STATS = """query(
  $from: DateTime!, $to: DateTime!, $bucket: StatsBucket, $groupBy: [StatsDimension!]
) {
  deliveryStats(from: $from, to: $to, bucket: $bucket, groupBy: $groupBy) {
    from to bucket groupBy total
    rows { bucketStart channel status provider eventType campaignId count }
  }
}"""
QUEUES = "query { queueStats { deadLettersWaiting queues { name messages consumers deadLetter } } }"


@pytest.fixture
async def seeded(engine: AsyncEngine) -> None:
    """The seeded history in the PostgreSQL store the app reads (its default)."""
    async with engine.begin() as conn:
        await conn.execute(text("TRUNCATE deliveries"))
    await PostgresHistoryStore(engine).add(seeded_history())


async def test_delivery_stats_over_graphql(gql: GraphQL, settings: Settings, seeded: None) -> None:
    variables = {
        "from": minutes(0).isoformat(),
        "to": minutes(60).isoformat(),
        "bucket": "FIFTEEN_MINUTES",
        "groupBy": ["CHANNEL", "STATUS"],
    }
    result = await gql(STATS, variables, token=token_for(settings, "manager"))
    stats = result["data"]["deliveryStats"]
    assert (stats["total"], stats["bucket"], stats["groupBy"]) == (
        7,
        "FIFTEEN_MINUTES",
        ["CHANNEL", "STATUS"],
    )
    got = [(r["bucketStart"], r["channel"], r["status"], r["count"]) for r in stats["rows"]]
    # By bucket, then the largest count first, then by key.
    assert got == [
        ("2026-03-01T12:00:00+00:00", "EMAIL", "SENT", 2),
        ("2026-03-01T12:00:00+00:00", "EMAIL", "FAILED", 1),
        ("2026-03-01T12:00:00+00:00", "SMS", "DEAD", 1),
        ("2026-03-01T12:00:00+00:00", "SMS", "SENT", 1),
        ("2026-03-01T12:15:00+00:00", "PUSH", "SKIPPED", 1),
        ("2026-03-01T12:45:00+00:00", "IN_APP", "SENT", 1),
    ]
    assert all(r["provider"] is r["eventType"] is r["campaignId"] is None for r in stats["rows"])

    totals = await gql(STATS, {**variables, "bucket": None, "groupBy": ["CAMPAIGN", "PROVIDER"]},
                       token=token_for(settings, "admin"))  # fmt: skip
    rows = totals["data"]["deliveryStats"]["rows"]
    assert [(r["bucketStart"], r["campaignId"], r["provider"], r["count"]) for r in rows] == [
        (None, "c1", "smtp", 1),
        (None, "c1", "smtp-backup", 1),
        (None, "c1", "twilio", 1),
        (None, "c2", "redis", 1),
        (None, None, "smtp", 1),
        (None, None, "twilio", 1),
        (None, None, None, 1),
    ]


@pytest.mark.parametrize("role", ["service", "user"])
async def test_only_managers_see_stats(gql: GraphQL, settings: Settings, role: str) -> None:
    variables = {"from": minutes(0).isoformat(), "to": minutes(60).isoformat()}
    for query, vars in ((STATS, variables), (QUEUES, None)):
        result = await gql(query, vars, token=token_for(settings, role))
        assert result["errors"][0]["extensions"]["code"] == "FORBIDDEN"
        assert result["data"] is None


@pytest.mark.parametrize(
    ("window", "bucket", "field"),
    [
        ((60, 60), None, "to"),
        ((60, 0), None, "to"),
        ((0, 93 * 24 * 60), None, "from"),
        ((0, 7 * 24 * 60 + 1), "FIVE_MINUTES", "bucket"),
    ],
)
async def test_a_bad_window_is_refused(
    gql: GraphQL, settings: Settings, window: tuple[int, int], bucket: str | None, field: str
) -> None:
    variables = {
        "from": minutes(window[0]).isoformat(),
        "to": minutes(window[1]).isoformat(),
        "bucket": bucket,
    }
    result = await gql(STATS, variables, token=token_for(settings, "manager"))
    error = result["errors"][0]
    assert error["extensions"]["code"] == "VALIDATION"
    assert error["extensions"]["field"] == field


async def test_queue_stats_count_waiting_messages_and_dead_letters(
    gql: GraphQL, settings: Settings, session: AsyncSession
) -> None:
    manager = token_for(settings, "manager")
    before = (await gql(QUEUES, token=manager))["data"]["queueStats"]
    by_name = {q["name"]: q for q in before["queues"]}
    assert list(by_name) == [*WORK_QUEUES, DEAD_LETTER_QUEUE]
    assert [q["deadLetter"] for q in before["queues"]] == [False] * len(WORK_QUEUES) + [True]

    connection = await aio_pika.connect(TEST_RABBITMQ_URL)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(WEBHOOKS, passive=True)
        try:
            for n in range(3):
                await channel.default_exchange.publish(
                    aio_pika.Message(f"m{n}".encode()), routing_key=WEBHOOKS
                )
            await DeadLetterRepository(session).add(
                [
                    DeadLetter(delivery_id=f"dl-{n}", event_id="e", event_type="t", user_id="u",
                               channel="email", envelope={}, error="refused", attempts=3)
                    for n in range(2)
                ]
            )  # fmt: skip
            await session.flush()
            after = (await gql(QUEUES, token=manager))["data"]["queueStats"]
        finally:
            await queue.purge()

        async def ignore(message: AbstractIncomingMessage) -> None:
            await message.reject(requeue=False)

        # A consumer on the queue is counted as well.
        await queue.consume(ignore)
        consumed = (await gql(QUEUES, token=manager))["data"]["queueStats"]
    webhooks = {q["name"]: q for q in after["queues"]}[WEBHOOKS]
    assert webhooks["messages"] == by_name[WEBHOOKS]["messages"] + 3
    assert after["deadLettersWaiting"] == before["deadLettersWaiting"] + 2
    watched = {q["name"]: q for q in consumed["queues"]}[WEBHOOKS]
    assert watched["consumers"] == by_name[WEBHOOKS]["consumers"] + 1
