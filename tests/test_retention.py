"""Forgetting a user (deleteRecipient) and the retention sweep.

The forgetting test gives a user with a distinctive id, email, name and phone data in every
table that can hold them, then scans every text, varchar, array and JSON column of every table
in the public schema (information_schema, so tables added later are scanned too) and every
document of the Mongo history for those strings: before deleteRecipient they are found, after it
none is.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import mongomock
import pytest
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from backend.channels import Channel
from backend.config import Settings
from backend.db.history.base import Attempt, DeliveryRecord, DeliveryStatus, StatusChange
from backend.db.history.mongo import TTL_INDEX
from backend.db.history.postgres import PostgresHistoryStore
from backend.db.models import (
    AuditEntry,
    Campaign,
    CampaignRun,
    DeadLetter,
    DigestItem,
    InboxCounter,
    InboxItem,
    RecipientAddress,
    RecipientRow,
    ScheduledEvent,
    Topic,
    TopicMember,
    UserPreferences,
)
from backend.services import retention
from backend.services.limits import KEY_PREFIX as LIMIT_KEY_PREFIX
from backend.services.users import CACHE_KEY_PREFIX
from tests.conftest import GraphQL
from tests.factories import make_delivery, token_for
from tests.history.conftest import mongomock_store

USER = "zq-forget-7a1c"
EMAIL = "zq.forget.7a1c@example.test"
NAME = "Zebulon Quiddity"
PHONE = "+15550107731"
NEEDLES = (USER, EMAIL, NAME, PHONE)
OTHER = "u-someone-else"
NOW = datetime.now(UTC)

DELETE = """
mutation ($userId: ID!) {
  deleteRecipient(userId: $userId) {
    __typename
    ... on RecipientDeleted {
      hashedUserId inboxItems preferences deliveriesScrubbed
      digestItemsCancelled scheduledEventsChanged campaignsChanged deadLetters
      auditEntriesScrubbed cacheKeys recipients addresses topicMemberships
    }
    ... on Error { code message }
  }
}
"""


def deliveries_of(
    user_id: str, name: str = NAME, email: str = EMAIL, phone: str = PHONE
) -> list[DeliveryRecord]:
    """An email sent after a refusal that quoted the address, and an in-app item."""
    sent = make_delivery(
        "", event_id="e-forget", user_id=user_id, created_at=NOW, status=DeliveryStatus.SENT
    )
    return [
        dataclasses.replace(
            sent,
            id=f"forget-{uuid.uuid4()}",
            template_slug="welcome",
            subject=f"Welcome, {name}",
            body=f"Your phone {phone} is confirmed",
            data={"email": email, "phone": phone},
            timeline=[StatusChange(DeliveryStatus.FAILED, NOW, reason=f"550 <{email}> busy")],
            attempts=[Attempt(1, NOW, provider="smtp", error=f"550 <{email}>"), Attempt(2, NOW)],
            provider_message_id=f"<{user_id}@mail>",
        ),
        dataclasses.replace(
            sent,
            id=f"forget-{uuid.uuid4()}",
            channel=Channel.IN_APP,
            title=f"Hello {name}",
            body=email,
        ),
    ]


async def give_the_user_data_everywhere(session: AsyncSession) -> None:
    """A row for the user in every PostgreSQL table that names users."""
    envelope = {"id": str(uuid.uuid4()), "type": "user_registered", "payload": {"name": NAME}}
    campaign = Campaign(
        name="Spring",
        category="news",
        template_slug="welcome",
        channels=["email"],
        audience={"user_ids": [USER]},
        payload={},
        status="scheduled",
        anchor_at=NOW,
        next_run_at=NOW + timedelta(days=1),
    )
    shared = Campaign(
        name="Shared",
        category="news",
        template_slug="welcome",
        channels=["email"],
        audience={"user_ids": [OTHER, USER]},
        payload={},
        status="completed",
        anchor_at=NOW,
    )
    topic = Topic(key=f"news-{uuid.uuid4().hex[:8]}", name="News", self_service=True)
    recipient = RecipientRow(
        user_id=USER, email=EMAIL, first_name=NAME, phone=PHONE, source="identify"
    )
    session.add_all([campaign, shared, topic, recipient])
    await session.flush()
    session.add_all(
        [
            InboxCounter(user_id=USER, seq=1),
            InboxItem(
                delivery_id=f"inbox-{uuid.uuid4()}",
                user_id=USER,
                seq=1,
                event_id="e-forget",
                event_type="user_registered",
                title=f"Hello {NAME}",
                body=f"Call {PHONE}",
                data={"email": EMAIL},
            ),
            UserPreferences(user_id=USER, disabled_channels=["sms"], disabled_event_types=[]),
            TopicMember(topic_key=topic.key, user_id=USER),
            RecipientAddress(
                user_id=USER,
                kind="WEB_PUSH",
                key=f"https://push.example/{USER}",
                value={"endpoint": f"https://push.example/{USER}", "p256dh": "p", "auth": "a"},
            ),
            DigestItem(
                event_type="movie_added",
                user_id=USER,
                digest_key="",
                due_at=NOW + timedelta(hours=1),
                event_id="e-digest",
                envelope=envelope,
                payload={"name": NAME},
                created_at=NOW,
            ),
            ScheduledEvent(
                id=uuid.uuid4(),
                due_at=NOW + timedelta(hours=1),
                envelope={**envelope, "user_ids": [USER], "payload": {"email": EMAIL}},
            ),
            ScheduledEvent(
                id=uuid.uuid4(),
                due_at=NOW + timedelta(hours=1),
                envelope={**envelope, "user_ids": [OTHER, USER], "payload": {}},
            ),
            CampaignRun(
                campaign_id=shared.id,
                scheduled_for=NOW,
                event_id=f"run-{uuid.uuid4()}",
                kind="test",
                test_user_id=USER,
                status="completed",
            ),
            DeadLetter(
                delivery_id=f"dead-{uuid.uuid4()}",
                event_id="e-forget",
                event_type="user_registered",
                user_id=USER,
                channel="sms",
                envelope={**envelope, "payload": {"phone": PHONE}},
                error=f"{PHONE} unreachable",
                attempts=5,
            ),
            AuditEntry(
                actor="admin-1",
                actor_roles=["admin"],
                operation="sendCampaignTest",
                arguments={"testUserId": USER, "note": f"for {USER}"},
                outcome="ok",
            ),
        ]
    )
    await session.flush()


async def found_in_tables(conn: AsyncConnection) -> dict[str, set[str]]:
    """``table.column`` -> the needles it holds, over every text-like column of every table
    in the public schema."""
    columns = await conn.execute(
        text(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = 'public' AND (data_type IN "
            "('text', 'character varying', 'character', 'json', 'jsonb', 'ARRAY'))"
        )
    )
    found: dict[str, set[str]] = {}
    for table, column in columns.all():
        for needle in NEEDLES:
            hit = await conn.execute(
                text(
                    f'SELECT 1 FROM "{table}" '
                    f'WHERE strpos(CAST("{column}" AS text), :needle) > 0 LIMIT 1'
                ),
                {"needle": needle},
            )
            if hit.first() is not None:
                found.setdefault(f"{table}.{column}", set()).add(needle)
    return found


def found_in_documents(database: Any) -> dict[str, set[str]]:
    """``collection`` -> the needles its documents hold, every document serialized."""
    found: dict[str, set[str]] = {}
    for name in database.list_collection_names():
        for document in database[name].find():
            serialized = json.dumps(document, default=str, ensure_ascii=False)
            for needle in NEEDLES:
                if needle in serialized:
                    found.setdefault(name, set()).add(needle)
    return found


async def cache_the_user(redis: Redis) -> None:
    profile = {"id": USER, "email": EMAIL, "name": NAME, "phone": PHONE}
    await redis.set(CACHE_KEY_PREFIX + USER, json.dumps(profile), ex=300)
    await redis.sadd(f"{LIMIT_KEY_PREFIX}t:user_registered:60:1:{USER}", "d-1")
    await redis.expire(f"{LIMIT_KEY_PREFIX}t:user_registered:60:1:{USER}", 300)


@pytest.fixture
async def pg_history(engine: AsyncEngine) -> AsyncIterator[PostgresHistoryStore]:
    """The PostgreSQL history store the app uses; it commits on its own, so what the test
    stored there is removed afterwards."""
    store = PostgresHistoryStore(engine)
    try:
        yield store
    finally:
        async with engine.begin() as conn:
            await conn.execute(text("DELETE FROM deliveries WHERE event_id = 'e-forget'"))


async def test_nothing_readable_about_a_deleted_recipient_remains(
    gql: GraphQL,
    settings: Settings,
    session: AsyncSession,
    connection: AsyncConnection,
    pg_history: PostgresHistoryStore,
    redis: Redis,
) -> None:
    await give_the_user_data_everywhere(session)
    await session.commit()
    await pg_history.add(
        deliveries_of(USER)
        + deliveries_of(OTHER, "Olga Other", "olga@example.test", "+15550100000")
    )
    await cache_the_user(redis)

    before = await found_in_tables(connection)
    assert set().union(*before.values()) == set(NEEDLES)
    assert {"deliveries.subject", "inbox_items.title", "audit_log.arguments"} <= before.keys()
    assert await redis.exists(CACHE_KEY_PREFIX + USER)

    admin = token_for(settings, "admin", sub="admin-1")
    body = await gql(DELETE, {"userId": USER}, token=admin)

    result = body["data"]["deleteRecipient"]
    hashed = retention.hash_user_id(USER, key=settings.forget_key)
    assert result == {
        "__typename": "RecipientDeleted",
        "hashedUserId": hashed,
        "inboxItems": 1,
        "preferences": 1,
        "deliveriesScrubbed": 2,
        "digestItemsCancelled": 1,
        "scheduledEventsChanged": 2,
        "campaignsChanged": 2,
        "deadLetters": 1,
        "auditEntriesScrubbed": 1,
        "cacheKeys": 2,
        "recipients": 1,
        "addresses": 1,
        "topicMemberships": 1,
    }
    assert await found_in_tables(connection) == {}
    assert not await redis.keys(f"*{USER}*")

    # Status rows stay for counts, under the hash; the other user's are untouched.
    counts = await connection.execute(
        text(
            "SELECT user_id, count(*) FROM deliveries WHERE event_id = 'e-forget' GROUP BY user_id"
        )
    )
    assert dict(counts.all()) == {hashed: 2, OTHER: 2}
    rows = await connection.execute(
        text("SELECT status, audience FROM campaigns WHERE name IN ('Spring', 'Shared')")
    )
    assert sorted((s, a["user_ids"]) for s, a in rows.all()) == [
        ("cancelled", []),
        ("completed", [OTHER]),
    ]
    shared = await connection.execute(text("SELECT envelope FROM scheduled_events"))
    assert [e["user_ids"] for (e,) in shared.all()] == [[OTHER]]
    # Other suites forget users too: this user's entry is the one carrying their hash.
    audit = await connection.execute(
        text(
            "SELECT arguments FROM audit_log WHERE operation = 'deleteRecipient' "
            "AND arguments->>'userId' = :hashed"
        ),
        {"hashed": hashed},
    )
    assert [a for (a,) in audit.all()] == [{"userId": hashed}]

    again = await gql(DELETE, {"userId": USER}, token=admin)
    counts_again = again["data"]["deleteRecipient"]
    assert counts_again["__typename"] == "RecipientDeleted"
    assert {k: v for k, v in counts_again.items() if isinstance(v, int) and v} == {}


async def test_the_mongo_history_keeps_nothing_readable_either(
    session: AsyncSession, redis: Redis
) -> None:
    client: Any = mongomock.MongoClient(tz_aware=True)
    store = mongomock_store(client.herald.deliveries, retention_days=0)
    await store.add(
        deliveries_of(USER)
        + deliveries_of(OTHER, "Olga Other", "olga@example.test", "+15550100000")
    )
    assert set().union(*found_in_documents(client.herald).values()) == set(NEEDLES)

    forgotten = await retention.forget_user(
        session, history=store, redis=redis, user_id=USER, hash_key=b"k"
    )

    assert forgotten.count("deliveries") == 2
    assert found_in_documents(client.herald) == {}
    users = sorted(d["user_id"] for d in client.herald.deliveries.find())
    assert users == sorted([forgotten.hashed_id] * 2 + [OTHER] * 2)
    client.close()


@pytest.mark.parametrize(
    ("roles", "outcome"),
    [
        (("service",), "RecipientDeleted"),
        (("manager",), "ForbiddenError"),
        (("user",), "ForbiddenError"),
    ],
)
async def test_admins_and_the_auth_service_may_delete_a_recipient(
    gql: GraphQL, settings: Settings, roles: tuple[str, ...], outcome: str
) -> None:
    body = await gql(DELETE, {"userId": "u-nobody"}, token=token_for(settings, *roles))

    assert body["data"]["deleteRecipient"]["__typename"] == outcome


async def test_a_blank_user_id_is_refused(gql: GraphQL, settings: Settings) -> None:
    body = await gql(DELETE, {"userId": " "}, token=token_for(settings, "admin"))

    assert body["data"]["deleteRecipient"]["code"] == "VALIDATION"


def test_the_hash_is_keyed() -> None:
    one = retention.hash_user_id(USER, key=b"key-1")

    assert one == retention.hash_user_id(USER, key=b"key-1")
    assert one != retention.hash_user_id(USER, key=b"key-2")
    assert USER not in one


async def test_the_inbox_sweep_deletes_old_items_in_batches(session: AsyncSession) -> None:
    await session.execute(text("DELETE FROM inbox_items"))
    session.add_all(
        InboxItem(
            delivery_id=f"sweep-{i}",
            user_id="u-sweep",
            seq=i,
            event_id="e",
            event_type="t",
            data={},
            created_at=NOW - timedelta(days=i * 10),
        )
        for i in range(6)
    )
    await session.flush()

    batches = []
    while batch := await retention.purge_inbox_batch(session, now=NOW, days=25, batch_size=2):
        batches.append(batch)
    assert batches == [2, 1]
    assert await retention.purge_inbox_batch(session, now=NOW, days=0, batch_size=2) == 0
    left = await session.execute(text("SELECT delivery_id FROM inbox_items ORDER BY seq"))
    assert list(left.scalars()) == ["sweep-0", "sweep-1", "sweep-2"]


async def test_mongo_retention_of_zero_keeps_forever_and_drops_the_ttl_index() -> None:
    client: Any = mongomock.MongoClient(tz_aware=True)
    with_ttl = mongomock_store(client.herald.deliveries, retention_days=30)
    await with_ttl.start()
    assert TTL_INDEX in client.herald.deliveries.index_information()

    forever = mongomock_store(client.herald.deliveries, retention_days=0)
    await forever.start()

    assert TTL_INDEX not in client.herald.deliveries.index_information()
    assert "created_at_id" in client.herald.deliveries.index_information()
    client.close()
