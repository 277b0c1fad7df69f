"""graphql-transport-ws on a real API process: token in connection_init, close codes, caps."""

from __future__ import annotations

import asyncio
import json

import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from tests.factories import token_for
from tests.graphql_ws import connect, init, receive, subscribe


async def close_code(ws) -> int:
    with pytest.raises(ConnectionClosed) as info:
        for _ in range(5):
            await asyncio.wait_for(ws.recv(), 5)
    assert info.value.rcvd is not None
    return info.value.rcvd.code


async def test_valid_token_streams_heartbeats(live_server, settings):
    async with connect(live_server.url) as ws:
        ack = await init(ws, token_for(settings, "user", sub="u-ws"))
        assert ack == {"type": "connection_ack", "payload": {"userId": "u-ws"}}
        await subscribe(ws, "subscription { heartbeat { at } }")
        msg = await receive(ws)
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
    async with connect(live_server.url) as ws:
        await ws.send(json.dumps({"type": "connection_init", "payload": payload}))
        assert await close_code(ws) == 4403


async def test_subscribe_before_init_is_4401(live_server):
    async with connect(live_server.url) as ws:
        await subscribe(ws, "subscription { heartbeat { at } }")
        assert await close_code(ws) == 4401


async def test_no_connection_init_times_out_with_4408(live_server):
    async with connect(live_server.url) as ws:
        assert await close_code(ws) == 4408


async def test_foreign_origin_is_refused(live_server):
    with pytest.raises(websockets.exceptions.InvalidStatus):
        await connect(live_server.url, origin="http://evil.example")


async def test_subscription_cap_per_connection(live_server, settings):
    async with connect(live_server.url) as ws:
        await init(ws, token_for(settings, "user"))
        cap = settings.ws_max_subscriptions
        for i in range(cap + 1):
            await subscribe(
                ws, "subscription { heartbeat(intervalSeconds: 300) { at } }", id=str(i)
            )
        errors = []
        nexts = set()
        for _ in range(cap + 1):
            msg = await receive(ws)
            if msg["type"] == "error":
                errors.append(msg)
            else:
                nexts.add(msg["id"])
        assert len(nexts) == cap
        assert errors[0]["id"] == str(cap)
        assert "limit" in errors[0]["payload"][0]["message"].lower()
