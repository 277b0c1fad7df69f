"""Topics: managing them and their members over GraphQL, self-service joining, and sending to
them: an event to two overlapping topics reaches each user once (dispatched through the
worker's units of work on real PostgreSQL and Redis), a campaign reads a topic larger than a
page, and a topic opt-out skips the user with a recorded reason."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
import redis.asyncio as redis_async
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from backend.channels import Channel
from backend.config import Settings
from backend.db.history.base import DeliveryFilter, DeliveryStatus
from backend.db.models import Campaign, CampaignRun
from backend.db.repositories.topics import forget_user
from backend.services import campaigns
from backend.services.deliveries import DeliveryContext, Envelope, delivery_id
from backend.services.users import UserProfile
from backend.workers.units import dispatch as dispatch_event
from tests.factories import delivery_context, token_for

CREATE = """mutation($input: CreateTopicInput!) { createTopic(input: $input) {
  __typename ... on Topic { key name selfService memberCount }
  ... on Error { code field message } } }"""
ADD = """mutation($key: String!, $ids: [String!]!) { addToTopic(key: $key, userIds: $ids) {
  __typename ... on TopicMembersChanged { changed memberCount } ... on Error { code field } } }"""
REMOVE = """mutation($key: String!, $ids: [String!]!) {
  removeFromTopic(key: $key, userIds: $ids) {
  __typename ... on TopicMembersChanged { changed memberCount } ... on Error { code field } } }"""
TOPIC = """query($key: String!, $after: String) { topic(key: $key) { key name memberCount
  members(first: 2, after: $after) { edges { node { userId } } pageInfo { hasNextPage endCursor } }
} }"""


@pytest.fixture
def manager(settings: Settings) -> str:
    return token_for(settings, "manager", sub="mgr-1")


async def test_a_topic_is_created_changed_listed_and_deleted(gql, manager) -> None:
    created = await gql(CREATE, {"input": {"key": "news", "name": "News"}}, token=manager)
    assert created["data"]["createTopic"] == {
        "__typename": "Topic",
        "key": "news",
        "name": "News",
        "selfService": False,
        "memberCount": 0,
    }
    again = await gql(CREATE, {"input": {"key": "news", "name": "Again"}}, token=manager)
    assert again["data"]["createTopic"]["code"] == "CONFLICT"
    bad = await gql(CREATE, {"input": {"key": "Not A Slug", "name": "x"}}, token=manager)
    assert bad["data"]["createTopic"]["code"] == "VALIDATION"
    assert bad["data"]["createTopic"]["field"] == "key"

    updated = await gql(
        """mutation { updateTopic(key: "news", input: {name: "Newsletter", selfService: true}) {
        ... on Topic { name selfService } } }""",
        token=manager,
    )
    assert updated["data"]["updateTopic"] == {"name": "Newsletter", "selfService": True}
    listed = await gql('{ topics(search: "letter") { edges { node { key } } } }', token=manager)
    assert [e["node"]["key"] for e in listed["data"]["topics"]["edges"]] == ["news"]

    deleted = await gql(
        'mutation { deleteTopic(key: "news") { __typename ... on Error { code } } }', token=manager
    )
    assert deleted["data"]["deleteTopic"]["__typename"] == "TopicDeleted"
    gone = await gql(
        'mutation { deleteTopic(key: "news") { __typename ... on Error { code } } }', token=manager
    )
    assert gone["data"]["deleteTopic"]["code"] == "NOT_FOUND"
    assert (await gql(TOPIC, {"key": "news"}, token=manager))["data"]["topic"] is None


async def test_members_are_added_idempotently_and_paged_by_cursor(gql, manager) -> None:
    await gql(CREATE, {"input": {"key": "beta", "name": "Beta"}}, token=manager)
    added = await gql(ADD, {"key": "beta", "ids": ["u3", "u1", "u2", "u1"]}, token=manager)
    assert added["data"]["addToTopic"] == {
        "__typename": "TopicMembersChanged",
        "changed": 3,
        "memberCount": 3,
    }
    again = await gql(ADD, {"key": "beta", "ids": ["u1", "u4"]}, token=manager)
    assert again["data"]["addToTopic"]["changed"] == 1

    seen: list[str] = []
    after = None
    for _ in range(5):
        page = (await gql(TOPIC, {"key": "beta", "after": after}, token=manager))["data"]
        members = page["topic"]["members"]
        seen += [e["node"]["userId"] for e in members["edges"]]
        if not members["pageInfo"]["hasNextPage"]:
            break
        after = members["pageInfo"]["endCursor"]
    assert seen == ["u1", "u2", "u3", "u4"]

    removed = await gql(REMOVE, {"key": "beta", "ids": ["u2", "nobody"]}, token=manager)
    assert removed["data"]["removeFromTopic"]["changed"] == 1
    assert removed["data"]["removeFromTopic"]["memberCount"] == 3
    missing = await gql(ADD, {"key": "nope", "ids": ["u1"]}, token=manager)
    assert missing["data"]["addToTopic"]["code"] == "NOT_FOUND"
    too_many = await gql(ADD, {"key": "beta", "ids": [f"u{i}" for i in range(1001)]}, token=manager)
    assert too_many["data"]["addToTopic"]["code"] == "VALIDATION"


async def test_users_join_only_self_service_topics(gql, settings, manager) -> None:
    open_topic = {"key": "open", "name": "Open", "selfService": True}
    await gql(CREATE, {"input": open_topic}, token=manager)
    await gql(CREATE, {"input": {"key": "closed", "name": "Closed"}}, token=manager)
    user = token_for(settings, "user", sub="reader-1")
    sub = """mutation($key: String!) { subscribeTopic(key: $key) {
      __typename ... on TopicSubscription { subscribed topic { key } } ... on Error { code } } }"""
    unsub = sub.replace("subscribeTopic", "unsubscribeTopic")

    joined = await gql(sub, {"key": "open"}, token=user)
    assert joined["data"]["subscribeTopic"]["subscribed"] is True
    refused = await gql(sub, {"key": "closed"}, token=user)
    assert refused["data"]["subscribeTopic"]["code"] == "FORBIDDEN"
    mine = await gql("{ myTopics { subscribed topic { key } } }", token=user)
    # Other suites' self-service topics may exist in this database: only this test's count.
    assert [t for t in mine["data"]["myTopics"] if t["topic"]["key"] in ("open", "closed")] == [
        {"subscribed": True, "topic": {"key": "open"}}
    ]

    left = await gql(unsub, {"key": "open"}, token=user)
    assert left["data"]["unsubscribeTopic"]["subscribed"] is False
    assert (await gql(TOPIC, {"key": "open"}, token=manager))["data"]["topic"]["memberCount"] == 0


async def test_only_managers_admins_and_services_manage_topics(gql, settings, manager) -> None:
    user = token_for(settings, "user", sub="u-1")
    service = token_for(settings, "service", sub="billing")
    refused = await gql(CREATE, {"input": {"key": "x", "name": "X"}}, token=user)
    assert refused["data"]["createTopic"]["code"] == "FORBIDDEN"
    by_service = await gql(CREATE, {"input": {"key": "x", "name": "X"}}, token=service)
    assert by_service["data"]["createTopic"]["code"] == "FORBIDDEN"
    await gql(CREATE, {"input": {"key": "x", "name": "X"}}, token=manager)
    added = await gql(ADD, {"key": "x", "ids": ["a"]}, token=service)
    assert added["data"]["addToTopic"]["changed"] == 1
    by_user = await gql(ADD, {"key": "x", "ids": ["b"]}, token=user)
    assert by_user["data"]["addToTopic"]["code"] == "FORBIDDEN"
    listing = await gql("{ topics { edges { node { key } } } }", token=user)
    assert listing["errors"][0]["extensions"]["code"] == "FORBIDDEN"


async def test_an_event_to_an_unknown_topic_is_a_typed_error(gql, settings) -> None:
    service = token_for(settings, "service", sub="svc")
    send = """mutation($input: EventInput!) { sendEvent(input: $input) {
      __typename ... on Error { code field } } }"""
    unknown = await gql(
        send, {"input": {"type": "user_registered", "topics": ["no-such"]}}, token=service
    )
    assert unknown["data"]["sendEvent"] == {
        "__typename": "NotFoundError",
        "code": "NOT_FOUND",
        "field": "topics",
    }
    nobody = await gql(send, {"input": {"type": "user_registered"}}, token=service)
    assert nobody["data"]["sendEvent"]["code"] == "VALIDATION"


# Sending to topics: the worker's own units of work, committed for real.


class CollectingQueue:
    """Dispatch parts (topic pages and their members) are kept to be run as the worker would."""

    def __init__(self) -> None:
        self.parts: list[Envelope] = []

    async def enqueue_send(self, *args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"in-app deliveries are sent inline: {args} {kwargs}")

    async def enqueue_dispatch(self, envelope: Envelope) -> None:
        self.parts.append(envelope)


@pytest.fixture
def ctx(settings: Settings, engine: AsyncEngine, redis: redis_async.Redis) -> DeliveryContext:
    """The worker's context, its dispatch parts (of 100 users) collected."""
    return delivery_context(
        settings.model_copy(update={"dispatch_part_size": 100}),
        engine,
        redis,
        queue=CollectingQueue(),
    )


@pytest.fixture
async def committed(engine: AsyncEngine) -> AsyncIterator[str]:
    """A prefix for topics and users committed for real, removed afterwards."""
    prefix = f"t{uuid.uuid4().hex[:8]}"
    yield prefix
    async with engine.begin() as conn:
        await conn.execute(text("DELETE FROM topics WHERE key LIKE :p"), {"p": f"{prefix}%"})
        await conn.execute(
            text("DELETE FROM user_preferences WHERE user_id LIKE :p"), {"p": f"{prefix}%"}
        )


async def add_members(engine: AsyncEngine, key: str, users: Sequence[str]) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            text("INSERT INTO topics (key, name) VALUES (:k, :k) ON CONFLICT DO NOTHING"),
            {"k": key},
        )
        await conn.execute(
            text("INSERT INTO topic_members (topic_key, user_id) VALUES (:k, :u)"),
            [{"k": key, "u": u} for u in users],
        )


async def dispatch_all(ctx: DeliveryContext, event: Envelope) -> int:
    """Dispatch the event, then every part it hands on, as worker processes would."""
    queue = ctx.queue
    assert isinstance(queue, CollectingQueue)
    profiles = {}
    pending, runs = [event], 0
    while pending:
        envelope = pending.pop(0)
        for u in envelope.recipients:
            profiles[u] = UserProfile(id=u, email=None, first_name="Ada", locale="en")
        await dispatch_event(ctx, envelope, profiles=profiles)
        runs += 1
        pending += queue.parts
        queue.parts.clear()
    return runs


def topic_event(topics: Sequence[str], user_ids: Sequence[str] = ()) -> Envelope:
    return Envelope(
        id=str(uuid.uuid4()),
        type="user_registered",
        user_ids=tuple(user_ids),
        template_slug="welcome",
        channels=(Channel.IN_APP,),
        payload={},
        topics=tuple(topics),
        topic_page=0,
        topic_after="",
    )


async def test_an_event_to_two_overlapping_topics_reaches_each_user_once(
    ctx: DeliveryContext, engine: AsyncEngine, committed: str
) -> None:
    # 150 and 120 members sharing 70, over pages of 100: 200 users in all, plus one listed
    # user who is also a member.
    a = [f"{committed}-u{i:03d}" for i in range(150)]
    b = [f"{committed}-u{i:03d}" for i in range(80, 200)]
    await add_members(engine, f"{committed}-a", a)
    await add_members(engine, f"{committed}-b", b)
    listed = a[5]
    event = topic_event([f"{committed}-a", f"{committed}-b"], [listed])

    runs = await dispatch_all(ctx, event)

    page = await ctx.history.find(DeliveryFilter(event_id=event.id), first=1000)
    users = [r.user_id for r in page.items]
    assert sorted(users) == sorted(set(a) | set(b))
    assert len(users) == len(set(users)) == 200
    assert {r.status for r in page.items} == {DeliveryStatus.SENT}
    assert runs >= 4  # the first page, its members, the listed user, the second page...

    # The whole event dispatched again (a redelivered message) sends nothing twice.
    await dispatch_all(ctx, event)
    again = await ctx.history.find(DeliveryFilter(event_id=event.id), first=1000)
    assert len(again.items) == 200


async def test_a_topic_opt_out_skips_the_user_but_not_a_listed_delivery(
    ctx: DeliveryContext, engine: AsyncEngine, committed: str
) -> None:
    topic = f"{committed}-promo"
    out, stays, listed = f"{committed}-out", f"{committed}-in", f"{committed}-listed"
    await add_members(engine, topic, [out, stays, listed])
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO user_preferences "
                "(user_id, disabled_channels, disabled_event_types, disabled_topics) "
                "VALUES (:u, '{}', '{}', :t)"
            ),
            [{"u": out, "t": [topic]}, {"u": listed, "t": [topic]}],
        )
    event = topic_event([topic], [listed])

    await dispatch_all(ctx, event)

    skipped = await ctx.history.get(delivery_id(event.id, out, Channel.IN_APP))
    assert skipped is not None and skipped.status is DeliveryStatus.SKIPPED
    assert topic in (skipped.timeline[0].reason or "")
    sent = await ctx.history.get(delivery_id(event.id, stays, Channel.IN_APP))
    assert sent is not None and sent.status is DeliveryStatus.SENT
    direct = await ctx.history.get(delivery_id(event.id, listed, Channel.IN_APP))
    assert direct is not None and direct.status is DeliveryStatus.SENT


class NoUsers:
    async def list_page(self, page: int, page_size: int, *, cache: bool = True) -> Any:
        raise AssertionError("a topic audience never lists every user")


async def test_a_campaign_reads_a_topic_audience_page_by_page_once_per_user(
    session: AsyncSession,
) -> None:
    await add_members_in(session, "c-a", [f"m{i:02d}" for i in range(0, 25)])
    await add_members_in(session, "c-b", [f"m{i:02d}" for i in range(20, 30)])
    campaign = Campaign(audience={"topics": ["c-a", "c-b"]}, channels=["in_app"])
    run = CampaignRun(kind="scheduled")
    pages, after, more = [], None, True
    while more:
        chunk = await campaigns.audience_page(
            session, campaign, run, len(pages), 10, NoUsers(), after=after
        )
        pages.append(chunk.user_ids)
        after, more = chunk.after, chunk.more
    assert [len(p) for p in pages] == [10, 10, 10]
    assert [u for p in pages for u in p] == [f"m{i:02d}" for i in range(30)]


async def add_members_in(session: AsyncSession, key: str, users: Sequence[str]) -> None:
    await session.execute(text("INSERT INTO topics (key, name) VALUES (:k, :k)"), {"k": key})
    await session.execute(
        text("INSERT INTO topic_members (topic_key, user_id) VALUES (:k, :u)"),
        [{"k": key, "u": u} for u in users],
    )


async def test_forgetting_a_user_removes_their_memberships(session: AsyncSession) -> None:
    await add_members_in(session, "f-a", ["gone", "kept"])
    await add_members_in(session, "f-b", ["gone"])
    assert await forget_user(session, "gone") == 2
    rows = await session.execute(
        text("SELECT user_id FROM topic_members WHERE topic_key IN ('f-a', 'f-b')")
    )
    assert [r[0] for r in rows] == ["kept"]


async def test_admins_and_managers_list_the_topics_a_user_is_in(gql, settings, manager) -> None:
    for key in ("alpha", "beta", "gamma"):
        await gql(CREATE, {"input": {"key": key, "name": key.title()}}, token=manager)
    await gql(ADD, {"key": "gamma", "ids": ["member-1"]}, token=manager)
    await gql(ADD, {"key": "alpha", "ids": ["member-1", "member-2"]}, token=manager)
    query = """query($id: ID!) { topicsOf(userId: $id) { key name memberCount } }"""

    admin = token_for(settings, "admin", sub="admin-1")
    for bearer in (manager, admin):
        found = await gql(query, {"id": "member-1"}, token=bearer)
        assert found["data"]["topicsOf"] == [
            {"key": "alpha", "name": "Alpha", "memberCount": 2},
            {"key": "gamma", "name": "Gamma", "memberCount": 1},
        ]
    assert (await gql(query, {"id": "nobody"}, token=manager))["data"]["topicsOf"] == []
    for role in ("user", "service"):
        refused = await gql(query, {"id": "member-1"}, token=token_for(settings, role, sub="x"))
        assert refused["errors"][0]["extensions"]["code"] == "FORBIDDEN"
