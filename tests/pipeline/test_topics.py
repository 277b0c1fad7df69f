"""Topics end to end: events and campaigns to overlapping topics, over HTTP to a real
``herald api``, expanded by a real worker, reach each member once.

The worker runs with HERALD_DISPATCH_PART_SIZE=100 (``worker_env``, the setting's least), the
page size of a topic's fan-out, and HERALD_CAMPAIGN_PAGE_SIZE=2; the topics below have 155
members together, so the union is expanded over two pages (and a campaign over many).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests import graphql_ws
from tests.conftest import GraphQL, LiveServer
from tests.factories import token_for
from tests.pipeline.conftest import in_app_template
from tests.pipeline.servers import eventually

KNOWN = [u["id"] for u in json.loads((Path(__file__).parent / "users.json").read_text())]
CREATE_TOPIC = """mutation($input: CreateTopicInput!) { createTopic(input: $input) {
  __typename ... on Error { code message } } }"""
ADD = """mutation($key: String!, $ids: [String!]!) { addToTopic(key: $key, userIds: $ids) {
  __typename ... on TopicMembersChanged { memberCount } ... on Error { code message } } }"""
SEND = """mutation($input: EventInput!) { sendEvent(input: $input) { __typename
  ... on EventAccepted { eventId } ... on Error { code message field } } }"""
CREATE_CAMPAIGN = """mutation($input: CampaignInput!) { createCampaign(input: $input) {
  __typename ... on Campaign { id } ... on Error { code message field } } }"""
CAMPAIGN = """query($id: ID!) { campaign(id: $id) { status
  runs { eventId recipients counts { status count } } } }"""
NOTIFICATIONS = """subscription { notifications {
  ... on Notification { id eventType title body } } }"""
FINAL = ("sent", "skipped", "failed", "dead")


@pytest.fixture
def admin(settings: Any) -> str:
    return token_for(settings, "admin", sub="topics-admin")


async def overlapping_topics(api: GraphQL, admin: str) -> tuple[list[str], set[str]]:
    """Two topics that share 52 members and have 155 together: every known user (the
    stand-in's, who get in-app items) and 150 that the auth service does not know."""
    run = uuid.uuid4().hex[:8]
    strangers = [f"u-t{run}-{n:03d}" for n in range(150)]
    members = {
        f"news-{run}": KNOWN + strangers[:100],
        f"beta-{run}": KNOWN[:2] + strangers[50:],
    }
    for key, ids in members.items():
        body = await api(CREATE_TOPIC, {"input": {"key": key, "name": key}}, token=admin)
        assert body["data"]["createTopic"]["__typename"] == "Topic", body
        body = await api(ADD, {"key": key, "ids": ids}, token=admin)
        assert body["data"]["addToTopic"]["memberCount"] == len(ids), body
    union = set(KNOWN) | set(strangers)
    assert len(union) == 155 and sum(len(ids) for ids in members.values()) == 207
    return list(members), union


async def rows(engine: AsyncEngine, sql: str, event_id: str) -> list[Any]:
    async with engine.connect() as conn:
        return list((await conn.execute(text(sql), {"e": event_id})).all())


async def final_deliveries(engine: AsyncEngine, event_id: str, count: int) -> list[Any]:
    """The event's deliveries once ``count`` of them are final (and a moment more, so that a
    second copy, if the fan-out made one, would have been stored too)."""

    async def done() -> list[Any] | None:
        found = await rows(
            engine, "SELECT user_id, status FROM deliveries WHERE event_id = :e", event_id
        )
        return found if sum(r.status in FINAL for r in found) >= count else None

    await eventually(done, timeout=60, interval=0.2)
    await asyncio.sleep(1)
    return await rows(
        engine, "SELECT user_id, status FROM deliveries WHERE event_id = :e", event_id
    )


def assert_each_once(deliveries: list[Any], inbox: list[Any], union: set[str]) -> None:
    per_user = Counter(r.user_id for r in deliveries)
    assert set(per_user) == union
    assert max(per_user.values()) == 1, [u for u, n in per_user.items() if n > 1]
    statuses = {r.user_id: r.status for r in deliveries}
    assert {u for u, s in statuses.items() if s == "sent"} == set(KNOWN)
    assert {s for u, s in statuses.items() if u not in KNOWN} == {"skipped"}
    assert sorted(r.user_id for r in inbox) == sorted(KNOWN)


async def test_an_event_to_overlapping_topics_reaches_each_member_once(
    api: GraphQL, admin: str, live_server: LiveServer, settings: Any, engine: AsyncEngine
) -> None:
    topics, union = await overlapping_topics(api, admin)
    slug = await in_app_template(api, admin)
    event_type = f"topic_news_{uuid.uuid4().hex[:8]}"
    what = uuid.uuid4().hex

    # One member listens on a live subscription before anything is sent.
    listener = KNOWN[0]
    async with graphql_ws.connect(live_server.url) as ws:
        ack = await graphql_ws.init(ws, token_for(settings, "user", sub=listener))
        assert ack["type"] == "connection_ack", ack
        await graphql_ws.subscribe(ws, NOTIFICATIONS)
        await asyncio.sleep(0.3)

        body = await api(
            SEND,
            {
                "input": {
                    "type": event_type,
                    "topics": topics,
                    "templateSlug": slug,
                    "channels": ["IN_APP"],
                    "payload": {"offer": what},
                }
            },
            token=token_for(settings, "service", sub="svc"),
        )
        accepted = body["data"]["sendEvent"]
        assert accepted["__typename"] == "EventAccepted", body
        event_id = accepted["eventId"]

        async def mine() -> dict[str, Any]:
            while True:
                message = await graphql_ws.receive(ws)
                item = ((message.get("payload") or {}).get("data") or {}).get("notifications")
                if message["type"] == "next" and item and item["eventType"] == event_type:
                    return item

        got = await asyncio.wait_for(mine(), 60)
        assert (got["title"], got["body"]) == ("Hi Alice", what)

        deliveries = await final_deliveries(engine, event_id, len(union))
        inbox = await rows(engine, "SELECT user_id FROM inbox_items WHERE event_id = :e", event_id)
        assert_each_once(deliveries, inbox, union)

        # Nothing more reaches the listener: one item, not one per topic.
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(mine(), 1.5)


async def test_a_campaign_to_overlapping_topics_reaches_each_member_once(
    api: GraphQL, admin: str, engine: AsyncEngine
) -> None:
    topics, union = await overlapping_topics(api, admin)
    slug = await in_app_template(api, admin)
    body = await api(
        CREATE_CAMPAIGN,
        {
            "input": {
                "name": f"topics {uuid.uuid4().hex[:6]}",
                "templateSlug": slug,
                "channels": ["IN_APP"],
                "audience": {"topics": topics},
                "payload": {"offer": "a campaign"},
                "category": "promo",
            }
        },
        token=admin,
    )
    created = body["data"]["createCampaign"]
    assert created["__typename"] == "Campaign", body

    async def completed() -> dict[str, Any] | None:
        found = (await api(CAMPAIGN, {"id": created["id"]}, token=admin))["data"]["campaign"]
        return found if found["status"] == "COMPLETED" else None

    campaign = await eventually(completed, timeout=90, interval=0.3)
    [run] = campaign["runs"]
    assert run["recipients"] == len(union)
    deliveries = await final_deliveries(engine, run["eventId"], len(union))
    inbox = await rows(
        engine, "SELECT user_id FROM inbox_items WHERE event_id = :e", run["eventId"]
    )
    assert_each_once(deliveries, inbox, union)
