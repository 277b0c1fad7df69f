"""graphql-transport-ws on a real API process: token in connection_init, close codes, caps."""

from __future__ import annotations

import asyncio
import json

import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from tests.factories import token_for

PROTOCOL = "graphql-transport-ws"


async def connect(server, origin=None):
    return await websockets.connect(
        server.ws_url,
        subprotocols=[PROTOCOL],
        origin=origin or server.url,
        open_timeout=5,
    )


async def close_code(ws) -> int:
    with pytest.raises(ConnectionClosed) as info:
        for _ in range(5):
            await asyncio.wait_for(ws.recv(), 5)
    assert info.value.rcvd is not None
    return info.value.rcvd.code


async def test_valid_token_streams_heartbeats(live_server, settings):
    async with await connect(live_server) as ws:
        token = token_for(settings, "user", sub="u-ws")
        await ws.send(
            json.dumps({"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}})
        )
        ack = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert ack == {"type": "connection_ack", "payload": {"userId": "u-ws"}}
        await ws.send(
            json.dumps(
                {
                    "id": "1",
                    "type": "subscribe",
                    "payload": {"query": "subscription { heartbeat { at } }"},
                }
            )
        )
        msg = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert msg["type"] == "next" and msg["id"] == "1"
        assert msg["payload"]["data"]["heartbeat"]["at"]


@pytest.mark.parametrize("case", ["missing", "expired", "wrong key", "refresh"])
async def test_bad_token_closes_with_4403(live_server, settings, case):
    from datetime import timedelta

    import jwt

    from backend.auth import mint_token

    tokens = {
        "missing": None,
        "expired": mint_token(settings, sub="u", roles=["user"], ttl=timedelta(seconds=-5)),
        "wrong key": jwt.encode({"sub": "u", "type": "access", "exp": 9999999999}, "k" * 40),
        "refresh": mint_token(settings, sub="u", roles=["user"], token_type="refresh"),
    }
    token = tokens[case]
    payload = {"authorization": f"Bearer {token}"} if token else {}
    async with await connect(live_server) as ws:
        await ws.send(json.dumps({"type": "connection_init", "payload": payload}))
        assert await close_code(ws) == 4403


async def test_subscribe_before_init_is_4401(live_server):
    async with await connect(live_server) as ws:
        await ws.send(
            json.dumps(
                {
                    "id": "1",
                    "type": "subscribe",
                    "payload": {"query": "subscription { heartbeat { at } }"},
                }
            )
        )
        assert await close_code(ws) == 4401


async def test_no_connection_init_times_out_with_4408(live_server):
    async with await connect(live_server) as ws:
        assert await close_code(ws) == 4408


async def test_foreign_origin_is_refused(live_server):
    with pytest.raises(websockets.exceptions.InvalidStatus):
        await websockets.connect(
            live_server.ws_url,
            subprotocols=[PROTOCOL],
            origin="http://evil.example",
            open_timeout=5,
        )


async def test_subscription_cap_per_connection(live_server, settings):
    async with await connect(live_server) as ws:
        token = token_for(settings, "user")
        await ws.send(
            json.dumps({"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}})
        )
        await asyncio.wait_for(ws.recv(), 5)
        cap = settings.ws_max_subscriptions
        for i in range(cap + 1):
            await ws.send(
                json.dumps(
                    {
                        "id": str(i),
                        "type": "subscribe",
                        "payload": {
                            "query": "subscription { heartbeat(intervalSeconds: 300) { at } }"
                        },
                    }
                )
            )
        errors = []
        nexts = set()
        for _ in range(cap + 1):
            msg = json.loads(await asyncio.wait_for(ws.recv(), 5))
            if msg["type"] == "error":
                errors.append(msg)
            else:
                nexts.add(msg["id"])
        assert len(nexts) == cap
        assert errors[0]["id"] == str(cap)
        assert "limit" in errors[0]["payload"][0]["message"].lower()
