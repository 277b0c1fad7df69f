"""The WebSocket fast path for ``notifications`` answers exactly as graphql-core would."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from backend.db.repositories.inbox import NewInboxItem
from backend.live_socket import NotificationPlans
from backend.schema.root import build_schema
from backend.services import inbox as inbox_service
from backend.services.live import NewNotification, ReadChange, RedisLivePublisher
from tests.factories import token_for
from tests.realtime.test_subscriptions import Client, store, user

FRAGMENTS = """
fragment Item on Notification { id cursor eventId eventType title body data createdAt read readAt }
fragment Seen on InboxUpdate { ... on ReadStateChange { archived ids } }
"""
# Aliases, __typename at the union and inside a fragment, spreads, inline fragments, a
# field asked twice: what a plan must reproduce, in graphql-core's key order.
FAST = (
    """subscription Feed($since: String) { feed: notifications(since: $since) {
  kind: __typename ...Item ... on Notification { heading: title id __typename }
  ...Seen ... on ReadStateChange { read } } }"""
    + FRAGMENTS
)
# The same selection, with a directive a plan does not take: Strawberry and graphql-core run it.
ORDINARY = FAST.replace("heading: title", "heading: title @include(if: true)")


@pytest.fixture(scope="module")
def plans(settings: Any) -> NotificationPlans:
    schema = build_schema(settings)
    return NotificationPlans(schema._schema, schema.documents)


@pytest.mark.parametrize(
    ("query", "planned"),
    [
        (FAST, True),
        ("subscription { notifications { ... on Notification { id data } } }", True),
        ('subscription { notifications(since: "abc") { __typename } }', True),
        ("subscription($s: String = null) { notifications(since: $s) { __typename } }", True),
        (ORDINARY, False),
        ("subscription @live { notifications { __typename } }", False),  # unknown directive
        ("subscription($s: String!) { notifications(since: $s) { __typename } }", False),
        ("subscription { notifications(since: 5) { __typename } }", False),  # invalid
        ("subscription { notifications { ... on Notification { nope } } }", False),
        ("subscription { heartbeat { at } }", False),
        ("query { viewer { id } }", False),
        ("subscription { notifications {", False),  # a syntax error
    ],
)
def test_plans_take_only_what_they_answer_exactly(
    plans: NotificationPlans, query: str, planned: bool
) -> None:
    assert (plans.get(query, None) is not None) is planned


def test_since_comes_from_the_literal_the_variable_or_its_default(plans: NotificationPlans):
    literal = plans.get('subscription { notifications(since: "c1") { __typename } }', None)
    assert literal is not None and literal.since(None) == "c1"
    q = 'subscription($s: String = "c0") { notifications(since: $s) { __typename } }'
    variable = plans.get(q, None)
    assert variable is not None
    assert variable.since({"s": "c2"}) == "c2"
    assert variable.since({}) == "c0"
    assert variable.since({"s": None}) is None


async def test_fast_and_ordinary_paths_send_the_same_messages(
    live_server, settings, committed, redis, plans
):
    assert plans.get(FAST, "Feed") is not None and plans.get(ORDINARY, "Feed") is None
    uid = user()
    [first] = await store(committed, uid, 1, publish=False)  # replayed with `since`
    earlier = await store(committed, uid, 1, publish=False)
    client = await Client.open(live_server, token_for(settings, "user", sub=uid))
    for op, query in (("fast", FAST), ("ordinary", ORDINARY)):
        await client.subscribe(query, {"since": first.cursor}, op=op)
    # A notification without title, with unicode and nested data; then a read-state change.
    odd = NewInboxItem(
        delivery_id=str(uuid.uuid4()),
        user_id=uid,
        event_id=str(uuid.uuid4()),
        event_type="movie_added",
        title=None,
        body="Ça tourne — 🎬",
        data={"movie": {"id": 7, "tags": ["a", None]}, "score": 0.5},
        created_at=datetime.now(UTC),
    )
    await asyncio.sleep(0.3)
    [live] = await inbox_service.store_items(committed.kw["bind"], [odd])
    publisher = RedisLivePublisher(redis)
    await publisher.publish_many([(uid, NewNotification(live))])
    await publisher.publish_many([(uid, ReadChange([live.delivery_id], True, False))])

    got: dict[str, list[Any]] = {"fast": [], "ordinary": []}
    while len(got["fast"]) < 3 or len(got["ordinary"]) < 3:
        message = await client.raw()
        assert message["type"] == "next", message
        got[message["id"]].append(message["payload"])
    assert [p["data"]["feed"]["id"] for p in got["fast"][:2]] == [
        earlier[0].delivery_id,
        live.delivery_id,
    ]
    # Same values and the same key order, item by item.
    for fast, ordinary in zip(got["fast"], got["ordinary"], strict=True):
        assert fast == ordinary
        assert list(fast["data"]["feed"]) == list(ordinary["data"]["feed"])
    assert got["fast"][1]["data"]["feed"]["heading"] is None
    assert got["fast"][2]["data"]["feed"] == {
        "kind": "ReadStateChange",
        "archived": False,
        "ids": [live.delivery_id],
        "read": True,
    }
    await client.close()


async def test_a_refused_fast_subscription_reads_as_any_other_error(live_server, settings):
    client = await Client.open(live_server, token_for(settings, "user", sub=user()))
    await client.subscribe(FAST, {"since": "not-a-cursor"})
    message = await client.raw()
    errors = message["payload"] if message["type"] == "error" else message["payload"]["errors"]
    assert errors[0]["extensions"]["code"] == "VALIDATION", message
    await client.close()
