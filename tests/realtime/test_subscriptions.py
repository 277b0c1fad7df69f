"""The in-app stream over graphql-transport-ws on real API processes, with real Redis."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from backend.db.repositories.inbox import NewInboxItem
from backend.services import inbox as inbox_service
from backend.services.live import NewNotification, RedisLivePublisher
from tests.conftest import start_live_server, stop_live_server
from tests.factories import token_for

NOTIFICATIONS = """subscription($since: String) { notifications(since: $since) { __typename
  ... on Notification { id cursor eventType title body data read archived archivedAt }
  ... on ReadStateChange { ids read archived } } }"""


class Client:
    """A graphql-transport-ws client, as an app would use it."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws

    @classmethod
    async def open(cls, server: Any, token: str) -> Client:
        ws = await websockets.connect(
            server.ws_url, subprotocols=["graphql-transport-ws"], origin=server.url
        )
        await ws.send(
            json.dumps({"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}})
        )
        ack = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert ack["type"] == "connection_ack", ack
        return cls(ws)

    async def subscribe(
        self, query: str, variables: dict[str, Any] | None = None, op: str = "1"
    ) -> None:
        await self.ws.send(
            json.dumps(
                {
                    "id": op,
                    "type": "subscribe",
                    "payload": {"query": query, "variables": variables or {}},
                }
            )
        )

    async def raw(self, timeout: float = 5) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(await asyncio.wait_for(self.ws.recv(), timeout))
        return result

    async def next(self, timeout: float = 5) -> dict[str, Any]:
        message = await self.raw(timeout)
        assert message["type"] == "next", message
        return message["payload"]["data"]

    async def nothing_within(self, seconds: float) -> None:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(self.ws.recv(), seconds)

    async def close_code(self, timeout: float = 10) -> int:
        with pytest.raises(ConnectionClosed) as info:
            while True:
                await asyncio.wait_for(self.ws.recv(), timeout)
        assert info.value.rcvd is not None
        return info.value.rcvd.code

    async def close(self) -> None:
        await self.ws.close()


async def store(
    sessionmaker: Any, user_id: str, count: int, *, publish: bool = True, redis: Any = None
) -> list[inbox_service.InboxEntry]:
    """Put items in a user's inbox the way the worker does: commit, then publish."""
    items = [
        NewInboxItem(
            delivery_id=str(uuid.uuid4()),
            user_id=user_id,
            event_id=str(uuid.uuid4()),
            event_type="test",
            title=f"item {i}",
            body=f"body {i}",
            data={"n": i},
            created_at=datetime.now(UTC),
        )
        for i in range(count)
    ]
    entries = await inbox_service.store_items(sessionmaker.kw["bind"], items)
    if publish:
        await RedisLivePublisher(redis).publish_many(
            [(e.user_id, NewNotification(e)) for e in entries]
        )
    return entries


def user() -> str:
    return f"rt-{uuid.uuid4().hex[:10]}"


async def listening(server: Any, settings: Any, uid: str) -> Client:
    """A socket of ``uid`` subscribed to its notifications, given a moment to be listened
    for."""
    client = await Client.open(server, token_for(settings, "user", sub=uid))
    await client.subscribe(NOTIFICATIONS)
    await asyncio.sleep(0.3)
    return client


async def test_items_reach_the_right_user_only(live_server, settings, committed, redis):
    alice, bob = user(), user()
    a = await listening(live_server, settings, alice)
    b = await listening(live_server, settings, bob)
    [entry] = await store(committed, alice, 1, redis=redis)
    got = (await a.next())["notifications"]
    assert got["id"] == entry.delivery_id and got["title"] == "item 0" and got["read"] is False
    assert got["data"] == {"n": 0}
    await b.nothing_within(1.0)
    await a.close()
    await b.close()


async def test_replay_with_since_then_live_without_doubles(live_server, settings, committed, redis):
    uid = user()
    entries = await store(committed, uid, 4, redis=redis)
    client = await Client.open(live_server, token_for(settings, "user", sub=uid))
    await client.subscribe(NOTIFICATIONS, {"since": entries[0].cursor})
    replayed = [(await client.next())["notifications"]["id"] for _ in range(3)]
    assert replayed == [e.delivery_id for e in entries[1:]]
    [live] = await store(committed, uid, 1, redis=redis)
    assert (await client.next())["notifications"]["id"] == live.delivery_id
    await client.nothing_within(0.8)
    await client.close()


async def test_a_hole_in_the_live_stream_is_filled_from_the_inbox(
    live_server, settings, committed, redis
):
    uid = user()
    client = await listening(live_server, settings, uid)
    silent = await store(committed, uid, 2, publish=False)  # their publish was lost
    [loud] = await store(committed, uid, 1, redis=redis)
    ids = [(await client.next())["notifications"]["id"] for _ in range(3)]
    assert ids == [silent[0].delivery_id, silent[1].delivery_id, loud.delivery_id]
    await client.close()


async def test_resync_after_the_redis_connection_drops(live_server, settings, committed, redis):
    uid = user()
    client = await listening(live_server, settings, uid)
    # Kill the API process's pub/sub connection, as a Redis restart would.
    pid = live_server.process.pid
    killed = 0
    for info in await redis.client_list():
        if info.get("name") == f"herald-live-{pid}":
            await redis.client_kill_filter(_id=info["id"])
            killed += 1
    assert killed == 1
    lost = await store(committed, uid, 2, redis=redis)  # published while nobody listens
    ids = [(await client.next(timeout=10))["notifications"]["id"] for _ in range(2)]
    assert ids == [e.delivery_id for e in lost]
    await client.close()


async def test_mark_read_reaches_the_users_other_devices(live_server, settings, committed, redis):
    import httpx

    uid = user()
    token = token_for(settings, "user", sub=uid)
    entries = await store(committed, uid, 2, publish=False)
    phone = await Client.open(live_server, token)
    laptop = await Client.open(live_server, token)
    await phone.subscribe(NOTIFICATIONS)
    await laptop.subscribe(NOTIFICATIONS)
    await asyncio.sleep(0.3)
    async with httpx.AsyncClient(base_url=live_server.url) as http:
        r = await http.post(
            "/graphql",
            json={
                "query": "mutation($ids: [ID!]!) { markRead(ids: $ids) { __typename "
                "... on InboxChange { ids unreadCount } } }",
                "variables": {"ids": [entries[0].delivery_id]},
            },
            headers={"Authorization": f"Bearer {token}"},
        )
        assert r.json()["data"]["markRead"] == {
            "__typename": "InboxChange",
            "ids": [entries[0].delivery_id],
            "unreadCount": 1,
        }
        for device in (phone, laptop):
            change = (await device.next())["notifications"]
            assert change == {
                "__typename": "ReadStateChange",
                "ids": [entries[0].delivery_id],
                "read": True,
                "archived": False,
            }
        inbox = await http.post(
            "/graphql",
            json={"query": "{ inbox(first: 10) { edges { node { id read } } } unreadCount }"},
            headers={"Authorization": f"Bearer {token}"},
        )
    data = inbox.json()["data"]
    assert data["unreadCount"] == 1
    assert [(n["node"]["id"], n["node"]["read"]) for n in data["inbox"]["edges"]] == [
        (entries[1].delivery_id, False),
        (entries[0].delivery_id, True),
    ]
    await phone.close()
    await laptop.close()


async def test_no_cross_user_reads_or_writes(live_server, settings, committed, redis):
    import httpx

    owner, intruder = user(), user()
    [entry] = await store(committed, owner, 1, publish=False)
    token = token_for(settings, "user", sub=intruder)
    async with httpx.AsyncClient(base_url=live_server.url) as http:
        headers = {"Authorization": f"Bearer {token}"}
        inbox = await http.post(
            "/graphql", json={"query": "{ inbox { edges { node { id } } } }"}, headers=headers
        )
        assert inbox.json()["data"]["inbox"]["edges"] == []
        marked = await http.post(
            "/graphql",
            json={
                "query": "mutation($ids: [ID!]!) { markRead(ids: $ids) { ... on InboxChange "
                "{ ids } } archive(ids: $ids) { ... on InboxChange { ids } } }",
                "variables": {"ids": [entry.delivery_id]},
            },
            headers=headers,
        )
    assert marked.json()["data"] == {"markRead": {"ids": []}, "archive": {"ids": []}}
    # The intruder subscribing with the owner's cursor still sees only their own stream.
    client = await Client.open(live_server, token)
    await client.subscribe(NOTIFICATIONS, {"since": inbox_service.inbox_cursor(0)})
    await client.nothing_within(1.0)
    await client.close()


async def test_the_socket_closes_when_the_token_expires(live_server, settings):
    from datetime import timedelta

    from backend.auth import mint_token

    token = mint_token(settings, sub=user(), roles=["user"], ttl=timedelta(seconds=2))
    client = await Client.open(live_server, token)
    await client.subscribe(NOTIFICATIONS)
    assert await client.close_code(timeout=10) == 4403


async def test_delivery_updates_for_managers_only(live_server, settings, redis):
    manager = await Client.open(live_server, token_for(settings, "manager"))
    await manager.subscribe(
        "subscription { deliveryUpdates(filter: {channel: EMAIL}) "
        "{ id status channel reason sequence } }"
    )
    await asyncio.sleep(0.3)
    item = {
        "id": "d1",
        "event_id": "e1",
        "event_type": "t",
        "campaign_id": None,
        "user_id": "u1",
        "status": "sent",
        "at": datetime.now(UTC).isoformat(),
        "reason": None,
        "sequence": 3,
    }
    await RedisLivePublisher(redis).publish_delivery_updates(
        [{**item, "channel": "sms"}, {**item, "channel": "email"}]
    )
    got = (await manager.next())["deliveryUpdates"]
    assert got == {"id": "d1", "status": "SENT", "channel": "EMAIL", "reason": None, "sequence": 3}
    await manager.close()

    plain = await Client.open(live_server, token_for(settings, "user"))
    await plain.subscribe("subscription { deliveryUpdates { id } }")
    message = json.loads(await asyncio.wait_for(plain.ws.recv(), 5))
    assert message["type"] in ("error", "next")
    errors = message["payload"] if message["type"] == "error" else message["payload"]["errors"]
    assert "roles" in errors[0]["message"]
    await plain.close()


async def test_a_slow_client_is_dropped_with_4008(engine, settings, committed, redis):
    server = start_live_server({"HERALD_LIVE_QUEUE_SIZE": "8"})
    try:
        uid = user()
        client = await listening(server, settings, uid)
        # A burst far larger than the 8-message buffer, faster than one socket drains it.
        await store(committed, uid, 400, redis=redis)
        assert await client.close_code(timeout=15) == 4008
    finally:
        stop_live_server(server)


async def test_two_api_processes_each_serve_their_own_sockets(
    live_server, engine, settings, committed, redis
):
    second = start_live_server()
    try:
        uid = user()
        one = await listening(live_server, settings, uid)
        two = await listening(second, settings, uid)
        [entry] = await store(committed, uid, 1, redis=redis)
        assert (await one.next())["notifications"]["id"] == entry.delivery_id
        assert (await two.next())["notifications"]["id"] == entry.delivery_id
        await one.close()
        await two.close()
    finally:
        stop_live_server(second)


async def test_user_channel_is_subscribed_only_while_needed(live_server, settings, redis):
    uid = user()
    channel = f"herald:user:{uid}"

    async def listeners() -> int:
        [(_, count)] = await redis.pubsub_numsub(channel)
        return int(count)

    assert await listeners() == 0
    first = await Client.open(live_server, token_for(settings, "user", sub=uid))
    second = await Client.open(live_server, token_for(settings, "user", sub=uid))
    await first.subscribe(NOTIFICATIONS)
    await second.subscribe(NOTIFICATIONS)
    await asyncio.sleep(0.5)
    assert await listeners() == 1  # one pub/sub connection per process, however many sockets
    await first.close()
    await asyncio.sleep(0.5)
    assert await listeners() == 1
    await second.close()
    for _ in range(20):
        if await listeners() == 0:
            break
        await asyncio.sleep(0.1)
    assert await listeners() == 0


async def test_live_subscriptions_per_user_are_capped(live_server, settings):
    uid = user()
    cap = settings.ws_max_subscriptions_per_user
    clients = [
        await Client.open(live_server, token_for(settings, "user", sub=uid)) for _ in range(cap + 1)
    ]
    for client in clients[:cap]:
        await client.subscribe(NOTIFICATIONS)
    await asyncio.sleep(0.5)
    await clients[cap].subscribe(NOTIFICATIONS)
    message = json.loads(await asyncio.wait_for(clients[cap].ws.recv(), 5))
    errors = message["payload"] if message["type"] == "error" else message["payload"]["errors"]
    assert "At most" in errors[0]["message"]
    for client in clients:
        await client.close()


async def test_alg_none_token_is_refused_on_the_socket(live_server):
    import base64

    def b64(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    token = (
        b64({"alg": "none", "typ": "JWT"})
        + "."
        + b64({"sub": "u", "roles": ["admin"], "type": "access", "exp": 9999999999})
        + "."
    )
    ws = await websockets.connect(
        live_server.ws_url, subprotocols=["graphql-transport-ws"], origin=live_server.url
    )
    await ws.send(
        json.dumps({"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}})
    )
    assert await Client(ws).close_code() == 4403


async def test_the_live_hub_survives_an_unexpected_error(engine, settings, committed, redis):
    import httpx

    from backend.realtime import fault_channel

    server = start_live_server({"HERALD_LIVE_HUB_FAULT_INJECTION": "true"})
    try:
        uid = user()
        client = await listening(server, settings, uid)
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:

            async def ready() -> tuple[int, list[str]]:
                r = await http.get("/readyz")
                return r.status_code, r.json().get("failing", [])

            assert await ready() == (200, [])
            # The hub's read loop raises, and its reconnecting fails for 3 s more.
            fault = orjson.dumps({"seconds": 3})
            assert await redis.publish(fault_channel(server.process.pid), fault) == 1
            assert await poll(ready, (503, ["live_hub"]), seconds=5)
            lost = await store(committed, uid, 1, redis=redis)  # published while it is down
            assert await poll(ready, (200, []), seconds=15)
            # Told to resync, the subscription reads what it missed, then live ones again.
            assert (await client.next(timeout=10))["notifications"]["id"] == lost[0].delivery_id
            [live] = await store(committed, uid, 1, redis=redis)
            assert (await client.next())["notifications"]["id"] == live.delivery_id
            metrics = (await http.get("/metrics")).text
        failures = [
            line
            for line in metrics.splitlines()
            if line.startswith('herald_live_hub_failures_total{reason="error"}')
        ]
        assert failures and float(failures[0].split()[-1]) >= 1
        await client.close()
    finally:
        stop_live_server(server)
    assert server.process.stderr is not None
    log = server.process.stderr.read().decode()
    assert "live hub failed; it starts again" in log
    assert "Traceback" in log and "InjectedFault" in log


async def poll(probe: Any, expected: Any, *, seconds: float) -> bool:
    deadline = asyncio.get_running_loop().time() + seconds
    while asyncio.get_running_loop().time() < deadline:
        if await probe() == expected:
            return True
        await asyncio.sleep(0.1)
    return False


async def test_archived_items_have_their_own_shelf_and_position_is_a_since(
    live_server, settings, committed, redis
):
    import httpx

    uid = user()
    token = token_for(settings, "user", sub=uid)
    headers = {"Authorization": f"Bearer {token}"}
    page = (
        "query($archived: Boolean!) "
        "{ inbox(archived: $archived) { position edges { node { id } } } }"
    )
    async with httpx.AsyncClient(base_url=live_server.url) as http:

        async def shelf(archived: bool) -> tuple[str, list[str]]:
            r = await http.post(
                "/graphql",
                json={"query": page, "variables": {"archived": archived}},
                headers=headers,
            )
            inbox = r.json()["data"]["inbox"]
            return inbox["position"], [e["node"]["id"] for e in inbox["edges"]]

        # An empty inbox still has a position: items stored after it was read and before the
        # subscription opened (never published live here) are replayed from it.
        empty_position, ids = await shelf(False)
        assert ids == []
        entries = await store(committed, uid, 3, publish=False)
        client = await Client.open(live_server, token)
        await client.subscribe(NOTIFICATIONS, {"since": empty_position})
        replayed = [(await client.next())["notifications"]["id"] for _ in range(3)]
        assert replayed == [e.delivery_id for e in entries]
        await client.close()

        archived = await http.post(
            "/graphql",
            json={
                "query": "mutation($ids: [ID!]!) "
                "{ archive(ids: $ids) { ... on InboxChange { ids } } }",
                "variables": {"ids": [entries[1].delivery_id]},
            },
            headers=headers,
        )
        assert archived.json()["data"]["archive"]["ids"] == [entries[1].delivery_id]
        position, unarchived = await shelf(False)
        assert unarchived == [entries[2].delivery_id, entries[0].delivery_id]
        assert position == entries[2].cursor
        assert (await shelf(True))[1] == [entries[1].delivery_id]


async def test_a_replay_carries_what_was_read_or_archived_while_the_client_was_away(
    live_server, settings, committed, redis
):
    # An item stored, then archived (or read) on another device while this client was offline
    # is replayed with that state: the client can shelve it instead of showing it as new.
    uid = user()
    entries = await store(committed, uid, 3, publish=False)
    async with committed() as session:
        await inbox_service.archive(session, user_id=uid, ids=[entries[1].delivery_id])
        await inbox_service.mark_read(session, user_id=uid, ids=[entries[2].delivery_id])
        await session.commit()
    client = await Client.open(live_server, token_for(settings, "user", sub=uid))
    await client.subscribe(NOTIFICATIONS, {"since": inbox_service.inbox_cursor(0)})
    replayed = [(await client.next())["notifications"] for _ in range(3)]
    assert [r["id"] for r in replayed] == [e.delivery_id for e in entries]
    assert [(r["read"], r["archived"]) for r in replayed] == [
        (False, False),
        (False, True),
        (True, False),
    ]
    assert replayed[0]["archivedAt"] is None and replayed[1]["archivedAt"] is not None
    [live] = await store(committed, uid, 1, redis=redis)
    got = (await client.next())["notifications"]
    assert got["id"] == live.delivery_id and got["archived"] is False
    await client.close()
