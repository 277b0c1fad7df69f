"""History store fixtures: every store the tests can reach, and typed delivery factories.

Datetimes here are whole milliseconds: that is all a BSON date holds (see mongo.py).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import mongomock
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.channels import Channel
from backend.db.history.base import (
    Attempt,
    DeliveryFilter,
    DeliveryRecord,
    DeliveryStatus,
    Engagement,
    EngagementKind,
    HistoryStore,
    StatusChange,
)
from backend.db.history.mongo import MongoHistoryStore
from backend.db.history.postgres import PostgresHistoryStore
from tests.factories import make_delivery

MONGODB_URL = os.environ.get("HERALD_TEST_MONGODB_URL")
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)  # make_delivery's default creation time


def minutes(n: float) -> datetime:
    """``T0`` plus ``n`` minutes."""
    return T0 + timedelta(minutes=n)


def full_delivery(id: str = "d-full") -> DeliveryRecord:
    """A delivery with every field set to a value of its own, so a field stored in the wrong
    place or not at all shows up in an equality check."""
    return DeliveryRecord(
        id=id,
        event_id="e-full",
        event_type="movie_added",
        user_id="u-full",
        channel=Channel.IN_APP,
        created_at=minutes(1),
        updated_at=minutes(9),
        status=DeliveryStatus.SENT,
        campaign_id="c-full",
        template_slug="new-movie",
        locale="fr",
        subject="Nouveau film",
        title="Un film",
        body="Regardez-le ce soir",
        data={"movie": {"id": 7, "title": "Heat"}, "tags": ["crime", "1995"], "rating": 8.3},
        timeline=[
            StatusChange(DeliveryStatus.QUEUED, minutes(1)),
            StatusChange(DeliveryStatus.SENDING, minutes(2), reason="worker-3"),
            StatusChange(DeliveryStatus.SENT, minutes(3)),
        ],
        attempts=[
            Attempt(1, minutes(2), provider="redis", error="timeout"),
            Attempt(2, minutes(3), provider="redis"),
        ],
        provider_message_id="msg-42",
        # Another offset than UTC: the store must keep the instant.
        read_at=datetime(2026, 3, 1, 16, 5, 30, 250_000, tzinfo=timezone(timedelta(hours=2))),
        archived_at=minutes(60),
        engagements=[
            Engagement(EngagementKind.OPENED, minutes(4)),
            Engagement(EngagementKind.CLICKED, minutes(5), url="https://example.org/a?b=1&c=é"),
        ],
        tenant_id="t-full",
    )


def filter_dataset() -> list[DeliveryRecord]:
    """Seven deliveries in which every filter field tells some apart; d4 and d5 share their
    ``created_at``, so their order is decided by id."""
    return [
        make_delivery("d1", user_id="u1", event_id="e1", created_at=minutes(0),
                      channel=Channel.EMAIL, status=DeliveryStatus.SENT),
        make_delivery("d2", user_id="u1", event_id="e1", created_at=minutes(1),
                      channel=Channel.SMS, status=DeliveryStatus.FAILED),
        make_delivery("d3", user_id="u2", event_id="e1", created_at=minutes(2),
                      channel=Channel.EMAIL, status=DeliveryStatus.QUEUED),
        make_delivery("d4", user_id="u2", event_id="e2", created_at=minutes(3), campaign_id="c1",
                      channel=Channel.PUSH, status=DeliveryStatus.SENT, tenant_id="globex"),
        make_delivery("d5", user_id="u1", event_id="e2", created_at=minutes(3), campaign_id="c1",
                      channel=Channel.IN_APP, status=DeliveryStatus.SENT),
        make_delivery("d6", user_id="u3", event_id="e3", created_at=minutes(5), campaign_id="c2",
                      channel=Channel.EMAIL, status=DeliveryStatus.DEAD, tenant_id="acme"),
        make_delivery("d7", user_id="u1", event_id="e3", created_at=minutes(6), campaign_id="c2",
                      channel=Channel.EMAIL, status=DeliveryStatus.SENT, tenant_id="acme"),
    ]  # fmt: skip


# (test id, filter, the ids find() returns, newest first) over filter_dataset()
FILTER_CASES: list[tuple[str, DeliveryFilter, list[str]]] = [
    ("everything", DeliveryFilter(), ["d7", "d6", "d5", "d4", "d3", "d2", "d1"]),
    ("user_id", DeliveryFilter(user_id="u1"), ["d7", "d5", "d2", "d1"]),
    ("tenant_id", DeliveryFilter(tenant_id="acme"), ["d7", "d6"]),
    ("tenant_id with a user", DeliveryFilter(tenant_id="acme", user_id="u1"), ["d7"]),
    ("event_id", DeliveryFilter(event_id="e2"), ["d5", "d4"]),
    ("an event and its runs' steps", DeliveryFilter(event_id="e2", event_ids=("e3", "e9")),
     ["d7", "d6", "d5", "d4"]),
    ("runs' steps with a user", DeliveryFilter(user_id="u1", event_id="e1", event_ids=("e3",)),
     ["d7", "d2", "d1"]),
    ("campaign_id", DeliveryFilter(campaign_id="c2"), ["d7", "d6"]),
    ("channel", DeliveryFilter(channel=Channel.EMAIL), ["d7", "d6", "d3", "d1"]),
    ("status", DeliveryFilter(status=DeliveryStatus.SENT), ["d7", "d5", "d4", "d1"]),
    ("since is inclusive", DeliveryFilter(since=minutes(3)), ["d7", "d6", "d5", "d4"]),
    ("until is exclusive", DeliveryFilter(until=minutes(3)), ["d3", "d2", "d1"]),
    ("since and until", DeliveryFilter(since=minutes(1), until=minutes(5)),
     ["d5", "d4", "d3", "d2"]),
    ("user, channel, status",
     DeliveryFilter(user_id="u1", channel=Channel.EMAIL, status=DeliveryStatus.SENT),
     ["d7", "d1"]),
    ("campaign and a time window",
     DeliveryFilter(campaign_id="c1", since=minutes(3), until=minutes(4)), ["d5", "d4"]),
    ("user, event, status", DeliveryFilter(user_id="u2", event_id="e2",
                                           status=DeliveryStatus.SENT), ["d4"]),
    ("every field", DeliveryFilter(user_id="u1", event_id="e3", campaign_id="c2",
                                   channel=Channel.EMAIL, status=DeliveryStatus.SENT,
                                   since=minutes(6), until=minutes(7)), ["d7"]),
    ("nothing matches", DeliveryFilter(user_id="u3", channel=Channel.SMS), []),
]  # fmt: skip


def paging_dataset() -> list[DeliveryRecord]:
    """Ten deliveries for one user, most sharing a ``created_at`` with others, added in no
    particular order, so page boundaries fall inside runs of equal timestamps."""
    stamps = {
        "p-07": 0, "p-03": 0, "p-10": 0,
        "p-01": 1, "p-09": 1,
        "p-02": 2, "p-08": 2, "p-05": 2, "p-04": 2,
        "p-06": 3,
    }  # fmt: skip
    return [make_delivery(i, user_id="pager", created_at=minutes(m)) for i, m in stamps.items()]


PAGING_ORDER = ["p-06", "p-08", "p-05", "p-04", "p-02", "p-09", "p-01", "p-10", "p-07", "p-03"]


class MockCollection:
    """A mongomock collection behind the async calls ``MongoHistoryStore`` makes, so the whole
    contract runs the Mongo store's own code on mongomock's query engine (no MongoDB server
    can run here). Only what the store calls is here: a new call fails loudly."""

    def __init__(self, collection: Any) -> None:
        self.sync = collection

    async def insert_many(self, documents: list[Any], *, ordered: bool) -> Any:
        return self.sync.insert_many(documents, ordered=ordered)

    async def find_one(self, query: Any) -> Any:
        return self.sync.find_one(query)

    def find(self, query: Any) -> MockCursor:
        return MockCursor(self.sync.find(query))

    async def update_one(self, query: Any, update: Any) -> Any:
        return self.sync.update_one(query, update)

    async def aggregate(self, pipeline: list[Any]) -> MockCursor:
        return MockCursor(self.sync.aggregate(pipeline))

    async def create_indexes(self, models: list[Any]) -> list[str]:
        return list(self.sync.create_indexes(models))

    async def index_information(self) -> dict[str, Any]:
        return dict(self.sync.index_information())

    async def drop_index(self, name: str) -> None:
        self.sync.drop_index(name)

    async def delete_many(self, query: Any) -> Any:
        return self.sync.delete_many(query)


class MockCursor:
    def __init__(self, cursor: Any) -> None:
        self.cursor = cursor

    def sort(self, spec: Any) -> MockCursor:
        self.cursor = self.cursor.sort(spec)
        return self

    def limit(self, count: int) -> MockCursor:
        self.cursor = self.cursor.limit(count)
        return self

    async def to_list(self) -> list[Any]:
        return list(self.cursor)


@pytest.fixture
def collection() -> Iterator[Any]:
    """An empty mongomock ``deliveries`` collection; datetimes come back aware, as the
    store's client is configured."""
    client: Any = mongomock.MongoClient(tz_aware=True)
    yield client.herald.deliveries
    client.close()


# Every store the tests can run: PostgreSQL, the Mongo store on mongomock, and the Mongo store
# on a real server when one is named (docker compose).
# The TTL index expires deliveries (mongomock too, as they are read): T0 must stay within it.
RETENTION_DAYS = 36_500
STORES = ["postgresql", "mongomock", *(["mongodb"] if MONGODB_URL else [])]


def mongomock_store(collection: Any, *, retention_days: int) -> MongoHistoryStore:
    """The Mongo store running its own code on a mongomock ``collection``. Its client is never
    used: it connects lazily, and its collection is replaced."""
    store = MongoHistoryStore("mongodb://127.0.0.1:1/unused", retention_days=retention_days)
    store.collection = MockCollection(collection)  # type: ignore[assignment]
    return store


async def empty_postgres_store(engine: AsyncEngine) -> PostgresHistoryStore:
    """The PostgreSQL store on an empty table: it commits its own transactions, so the test's
    rolled-back transaction cannot undo what the previous test stored."""
    async with engine.begin() as conn:
        await conn.execute(text("TRUNCATE deliveries"))
    return PostgresHistoryStore(engine)


@pytest.fixture(params=STORES)
async def store(
    request: pytest.FixtureRequest, engine: AsyncEngine, collection: Any
) -> AsyncIterator[HistoryStore]:
    """An empty history store of each kind."""
    if request.param == "postgresql":
        yield await empty_postgres_store(engine)
        return
    if request.param == "mongomock":
        mock = mongomock_store(collection, retention_days=RETENTION_DAYS)
        await mock.start()
        yield mock
        await mock.close()
        return
    assert MONGODB_URL is not None
    name = f"herald_test_history_{uuid.uuid4().hex[:12]}"
    mongo = MongoHistoryStore(MONGODB_URL, database=name, retention_days=RETENTION_DAYS)
    await mongo.start()
    try:
        yield mongo
    finally:
        await mongo.client.drop_database(name)
        await mongo.close()
