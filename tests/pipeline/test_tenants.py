"""Tenants end to end, over HTTP and WebSocket to a real ``herald api`` with a real worker:
events of two tenants (and of none) to one user id are rendered with each tenant's override
and branding (the shared template as the fallback), and a caller bound to a tenant (a token's
claim, or an API key made for it) reads and changes nothing of the other: its live
notifications, its inbox, the history and the managers' live feed are its tenant's only."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from typing import Any

import pytest

from tests import graphql_ws
from tests.conftest import GraphQL, LiveServer
from tests.factories import create_template, token_for
from tests.pipeline.servers import eventually

SAVE_TENANT = """mutation($input: SaveTenantInput!) { saveTenant(input: $input) {
  __typename ... on Error { code message } } }"""
CREATE_KEY = """mutation($i: CreateApiKeyInput!) { createApiKey(input: $i) { __typename
  ... on CreatedApiKey { secret apiKey { tenantId } } ... on Error { code message } } }"""
KEYS = "{ apiKeys { edges { node { prefix tenantId } } } }"
SEND = """mutation($input: EventInput!) { sendEvent(input: $input) { __typename
  ... on EventAccepted { eventId } ... on Error { code message field } } }"""
NOTIFICATIONS = """subscription { notifications {
  ... on Notification { id eventType title body } } }"""
FEED = """subscription { deliveryUpdates(filter: {userId: "u-alice"}) { eventId status } }"""
INBOX = "{ inbox(first: 100) { edges { node { id eventType title } } } }"
MARK_READ = """mutation($ids: [ID!]!) { markRead(ids: $ids) { __typename
  ... on InboxChange { ids } ... on Error { code } } }"""
EVENT = "query($id: ID!) { event(id: $id) { deliveries { id tenantId status } } }"
DELIVERIES = """query($f: DeliveryFilter) { deliveries(filter: $f, first: 100) {
  edges { node { eventId tenantId } } } }"""

TEXT = "{{ payload.offer }}|{{ tenant.primary_color }}|{{ tenant.logo_url }}"
SHARED_TITLE = "Hi {{ user.first_name }}{% if tenant.name %} from {{ tenant.name }}{% endif %}"
OVERRIDE_TITLE = "{{ tenant.name }} welcomes {{ user.first_name }}"


def content(title: str) -> list[dict[str, Any]]:
    return [{"channel": "IN_APP", "locale": "en", "title": title, "body": TEXT}]


async def ok(api: GraphQL, query: str, variables: dict[str, Any], token: str, field: str) -> Any:
    body = await api(query, variables, token=token)
    result = body["data"][field]
    assert "code" not in result, body
    return result


async def notifications(ws: Any, event_type: str, count: int) -> list[dict[str, Any]]:
    """The next ``count`` notifications of ``event_type`` the socket carries (the caller
    bounds the wait)."""
    found: list[dict[str, Any]] = []
    while len(found) < count:
        message = json.loads(await ws.recv())
        item = ((message.get("payload") or {}).get("data") or {}).get("notifications")
        if message["type"] == "next" and item and item["eventType"] == event_type:
            found.append(item)
    return found


@contextlib.asynccontextmanager
async def listening(live_server: LiveServer, token: str, query: str) -> Any:
    async with graphql_ws.connect(live_server.url) as ws:
        ack = await graphql_ws.init(ws, token)
        assert ack["type"] == "connection_ack", ack
        await graphql_ws.subscribe(ws, query)
        yield ws


@pytest.fixture
def run() -> str:
    return uuid.uuid4().hex[:8]


async def test_two_tenants_one_user_id_each_sees_only_its_own(
    api: GraphQL, live_server: LiveServer, settings: Any, run: str
) -> None:
    admin = token_for(settings, "admin", sub="install-admin")
    acme, globex = f"acme-{run}", f"globex-{run}"
    await ok(
        api,
        SAVE_TENANT,
        {
            "input": {
                "id": acme,
                "name": "Acme",
                "logoUrl": "https://acme.example/logo.png",
                "primaryColor": "#aa0000",
            }
        },
        admin,
        "saveTenant",
    )
    await ok(
        api,
        SAVE_TENANT,
        {"input": {"id": globex, "name": "Globex", "primaryColor": "#00bb00"}},
        admin,
        "saveTenant",
    )
    slug = f"t-hello-{run}"
    await create_template(api, admin, slug, content(SHARED_TITLE), name="Hello")
    # Acme's manager overrides it (for Acme: the token's claim decides, not an argument).
    acme_manager = token_for(settings, "manager", sub="acme-mgr", tenant=acme)
    await create_template(api, acme_manager, slug, content(OVERRIDE_TITLE), name="Hello")
    # Acme's service sends with an API key made for Acme.
    key = await ok(
        api,
        CREATE_KEY,
        {"i": {"name": f"acme-svc-{run}", "grants": ["service"], "tenantId": acme}},
        admin,
        "createApiKey",
    )
    assert key["apiKey"]["tenantId"] == acme
    listed = (await api(KEYS, token=admin))["data"]["apiKeys"]["edges"]
    assert acme in [e["node"]["tenantId"] for e in listed]

    event_type = f"tenant_news_{run}"
    service = token_for(settings, "service", sub="svc")

    def event(offer: str, **more: Any) -> dict[str, Any]:
        return {
            "input": {
                "type": event_type,
                "userIds": ["u-alice"],
                "templateSlug": slug,
                "channels": ["IN_APP"],
                "payload": {"offer": offer},
                **more,
            }
        }

    tokens = {
        acme: token_for(settings, "user", sub="u-alice", tenant=acme),
        globex: token_for(settings, "user", sub="u-alice", tenant=globex),
        None: token_for(settings, "user", sub="u-alice"),
    }
    globex_manager = token_for(settings, "manager", sub="globex-mgr", tenant=globex)
    async with (
        listening(live_server, tokens[acme], NOTIFICATIONS) as acme_ws,
        listening(live_server, tokens[globex], NOTIFICATIONS) as globex_ws,
        listening(live_server, tokens[None], NOTIFICATIONS) as any_ws,
        listening(live_server, globex_manager, FEED) as feed_ws,
    ):
        await asyncio.sleep(0.5)
        # The key's tenant is Acme's: naming Globex is refused, naming none sends for Acme.
        refused = await api(
            SEND, event("nope", tenantId=globex), headers={"X-Api-Key": key["secret"]}
        )
        assert refused["data"]["sendEvent"]["code"] == "FORBIDDEN", refused
        sent = await api(SEND, event("for acme"), headers={"X-Api-Key": key["secret"]})
        acme_event = sent["data"]["sendEvent"]["eventId"]
        sent = await api(SEND, event("for globex", tenantId=globex), token=service)
        globex_event = sent["data"]["sendEvent"]["eventId"]
        sent = await api(SEND, event("for nobody"), token=service)
        shared_event = sent["data"]["sendEvent"]["eventId"]

        [got] = await asyncio.wait_for(notifications(acme_ws, event_type, 1), 60)
        assert (got["title"], got["body"]) == (
            "Acme welcomes Alice",
            "for acme|#aa0000|https://acme.example/logo.png",
        )
        [got] = await asyncio.wait_for(notifications(globex_ws, event_type, 1), 60)
        # Globex has no override: the shared template, with Globex's branding (no logo).
        assert (got["title"], got["body"]) == ("Hi Alice from Globex", "for globex|#00bb00|")
        everything = await asyncio.wait_for(notifications(any_ws, event_type, 3), 60)
        assert {(n["title"], n["body"]) for n in everything} == {
            ("Acme welcomes Alice", "for acme|#aa0000|https://acme.example/logo.png"),
            ("Hi Alice from Globex", "for globex|#00bb00|"),
            ("Hi Alice", "for nobody||"),
        }
        # Nothing of another tenant reaches a bound subscriber, though it is the same user id.
        for ws in (acme_ws, globex_ws):
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(notifications(ws, event_type, 1), 1.5)

        # The managers' live feed of a Globex manager: Globex's deliveries only.
        seen: list[str] = []

        async def feed_until_globex_sent() -> None:
            while True:
                message = json.loads(await feed_ws.recv())
                update = ((message.get("payload") or {}).get("data") or {}).get("deliveryUpdates")
                if update:
                    seen.append(update["eventId"])
                    if update["eventId"] == globex_event and update["status"] == "SENT":
                        return

        await asyncio.wait_for(feed_until_globex_sent(), 60)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(feed_until_globex_sent(), 1.5)
        assert set(seen) == {globex_event}

    # The inbox over HTTP: each bound user id sees its tenant's item only.
    def inbox_of(body: dict[str, Any]) -> list[dict[str, Any]]:
        edges = body["data"]["inbox"]["edges"]
        return [e["node"] for e in edges if e["node"]["eventType"] == event_type]

    acme_inbox = inbox_of(await api(INBOX, token=tokens[acme]))
    assert [n["title"] for n in acme_inbox] == ["Acme welcomes Alice"]
    globex_inbox = inbox_of(await api(INBOX, token=tokens[globex]))
    assert [n["title"] for n in globex_inbox] == ["Hi Alice from Globex"]
    assert len(inbox_of(await api(INBOX, token=tokens[None]))) == 3
    # Marking Acme's item read as Globex changes nothing.
    body = await api(MARK_READ, {"ids": [acme_inbox[0]["id"]]}, token=tokens[globex])
    assert body["data"]["markRead"] == {"__typename": "InboxChange", "ids": []}
    body = await api(MARK_READ, {"ids": [acme_inbox[0]["id"]]}, token=tokens[acme])
    assert body["data"]["markRead"]["ids"] == [acme_inbox[0]["id"]]

    # The history: another tenant's event has no deliveries for a bound manager.
    async def final(event_id: str, token: str) -> list[dict[str, Any]] | None:
        items = (await api(EVENT, {"id": event_id}, token=token))["data"]["event"]["deliveries"]
        return items if items and items[0]["status"] == "SENT" else None

    [delivery] = await eventually(lambda: final(acme_event, acme_manager), timeout=30)
    assert delivery["tenantId"] == acme
    assert (await api(EVENT, {"id": acme_event}, token=globex_manager))["data"]["event"][
        "deliveries"
    ] == []
    assert (await api(EVENT, {"id": shared_event}, token=globex_manager))["data"]["event"][
        "deliveries"
    ] == []
    body = await api(DELIVERIES, {"f": {"userId": "u-alice"}}, token=globex_manager)
    events = {
        e["node"]["eventId"]: e["node"]["tenantId"] for e in body["data"]["deliveries"]["edges"]
    }
    assert globex_event in events and set(events.values()) == {globex}
    body = await api(DELIVERIES, {"f": {"tenantId": acme}}, token=globex_manager)
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    body = await api(DELIVERIES, {"f": {"tenantId": acme}}, token=admin)
    assert {e["node"]["eventId"] for e in body["data"]["deliveries"]["edges"]} == {acme_event}
