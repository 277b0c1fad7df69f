"""One event to thousands of live subscriptions: every one receives it, or resyncs to it.

A subscription opened together with thousands of others must be in place as soon as its
socket is (its opening reads are batched); once in place, a broadcast reaches it live, and a
broadcast published while the API's Redis subscription is down reaches it through a resync
from its cursor.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import websockets
from sqlalchemy import event

from backend.db.repositories.inbox import NewInboxItem
from backend.realtime import fault_channel
from backend.resolvers.inbox import open_inbox_stream
from backend.schema.context import Context
from backend.services import inbox as inbox_service
from backend.services.live import NewNotification, RedisLivePublisher
from tests.conftest import start_live_server, stop_live_server
from tests.factories import token_for

SOCKETS = 3000
SUBSCRIBE = json.dumps(
    {
        "id": "1",
        "type": "subscribe",
        "payload": {"query": "subscription { notifications { ... on Notification { id } } }"},
    }
)


async def broadcast(committed: Any, redis: Any, users: list[str]) -> dict[str, str]:
    """One item to each user, stored then published as the worker does: user → item id."""
    now = datetime.now(UTC)
    items = [
        NewInboxItem(
            delivery_id=str(uuid.uuid4()),
            user_id=u,
            event_id="broadcast",
            event_type="test",
            title="t",
            body="b",
            data={},
            created_at=now,
        )
        for u in users
    ]
    entries = await inbox_service.store_items(committed.kw["bind"], items)
    await RedisLivePublisher(redis).publish_many([(e.user_id, NewNotification(e)) for e in entries])
    return {e.user_id: e.delivery_id for e in entries}


async def open_subscription(server: Any, token: str) -> Any:
    ws = await websockets.connect(
        server.ws_url,
        subprotocols=["graphql-transport-ws"],
        origin=server.url,
        open_timeout=60,
        ping_interval=None,
    )
    await ws.send(
        json.dumps({"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}})
    )
    ack = json.loads(await asyncio.wait_for(ws.recv(), 30))
    assert ack["type"] == "connection_ack", ack
    await ws.send(SUBSCRIBE)
    return ws


async def received(sockets: dict[str, Any], seconds: float) -> dict[str, str | None]:
    """The id each socket's next message carries (None when it is something else)."""

    async def one(ws: Any) -> str | None:
        message = json.loads(await asyncio.wait_for(ws.recv(), seconds))
        if message.get("type") != "next":
            return None
        item_id: str = message["payload"]["data"]["notifications"]["id"]
        return item_id

    got = await asyncio.gather(*(one(ws) for ws in sockets.values()), return_exceptions=True)
    return {
        u: (g if isinstance(g, str | None) else repr(g)) for u, g in zip(sockets, got, strict=True)
    }


async def open_subscriptions(http: httpx.AsyncClient) -> float:
    for line in (await http.get("/metrics")).text.splitlines():
        if line.startswith("herald_open_subscriptions "):
            return float(line.split()[1])
    return -1.0


async def test_a_broadcast_reaches_every_open_subscription_live_or_by_resync(
    engine, settings, committed, redis
):
    with tempfile.TemporaryFile() as log:
        server = start_live_server(
            {"HERALD_WS_CONNECT_RATE_PER_SECOND": "0", "HERALD_LIVE_HUB_FAULT_INJECTION": "true"},
            log=log,
        )
        sockets: dict[str, Any] = {}
        try:
            run = uuid.uuid4().hex[:8]
            users = [f"fan-{run}-{i}" for i in range(SOCKETS)]
            for start in range(0, SOCKETS, 250):
                batch = users[start : start + 250]
                opened = await asyncio.gather(
                    *(open_subscription(server, token_for(settings, "user", sub=u)) for u in batch)
                )
                sockets.update(zip(batch, opened, strict=True))
            async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
                # The subscriptions kept up with their sockets (the server tells how many it
                # has in place); then one item to every user, live.
                deadline = time.monotonic() + 30
                while await open_subscriptions(http) < SOCKETS and time.monotonic() < deadline:
                    await asyncio.sleep(0.1)
                assert await open_subscriptions(http) == SOCKETS
                sent = await broadcast(committed, redis, users)
                got = await received(sockets, 30)
                missing = {u for u in users if got[u] != sent[u]}
                assert not missing, f"{len(missing)} of {SOCKETS}, e.g. {got[min(missing)]}"

                # The API's Redis subscription fails (and stays down for 5 s): what is
                # published meanwhile reaches nobody live, and every subscription resyncs.
                fault = orjson.dumps({"seconds": 5})
                assert await redis.publish(fault_channel(server.process.pid), fault) == 1
                deadline = time.monotonic() + 10
                while (await http.get("/readyz")).status_code == 200:
                    assert time.monotonic() < deadline
                    await asyncio.sleep(0.05)
                sent = await broadcast(committed, redis, users)
                assert (await http.get("/readyz")).status_code == 503  # published while down
                got = await received(sockets, 45)
                missing = {u for u in users if got[u] != sent[u]}
                assert not missing, f"{len(missing)} of {SOCKETS}, e.g. {got[min(missing)]}"
        finally:
            await asyncio.gather(*(ws.close() for ws in sockets.values()), return_exceptions=True)
            stop_live_server(server)


async def test_subscriptions_opening_together_share_their_database_reads(app, app_services):
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    sync_engine = app_services.engine.sync_engine
    run = uuid.uuid4().hex[:8]
    contexts = [
        Context(
            services=app_services,
            authorization=f"Bearer {token_for(app_services.settings, 'user', sub=f'o-{run}-{i}')}",
        )
        for i in range(1000)
    ]
    event.listen(sync_engine, "before_cursor_execute", count)
    try:
        streams = await asyncio.gather(*(open_inbox_stream(c, None) for c in contexts))
    finally:
        event.remove(sync_engine, "before_cursor_execute", count)
    try:
        # Two reads each (before and after subscribing), shared: not 2,000 queries.
        assert len(statements) <= 4, statements
        assert all(s.last == 0 and not s.replay for s in streams)
    finally:
        await asyncio.gather(*(s.aclose() for s in streams))
