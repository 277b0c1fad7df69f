"""A ``graphql-transport-ws`` client for the tests: the socket of a running API, and its
messages as dicts."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection

PROTOCOL = "graphql-transport-ws"


def connect(base_url: str, *, origin: str | None = None) -> websockets.connect:
    """The GraphQL socket of the API at ``base_url``, opened from the API's own origin unless
    another is given (``async with connect(...) as ws``, or ``await connect(...)``)."""
    return websockets.connect(
        base_url.replace("http://", "ws://") + "/graphql",
        subprotocols=[PROTOCOL],
        origin=origin or base_url,
        open_timeout=5,
    )


async def send(ws: ClientConnection, message: dict[str, Any]) -> None:
    await ws.send(json.dumps(message))


async def receive(ws: ClientConnection) -> dict[str, Any]:
    """The next message, within 5 s."""
    message: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), 5))
    return message


async def init(ws: ClientConnection, token: str) -> dict[str, Any]:
    """``connection_init`` with ``token``; the server's answer."""
    await send(ws, {"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}})
    return await receive(ws)


async def subscribe(ws: ClientConnection, query: str, *, id: str = "1") -> None:
    await send(ws, {"id": id, "type": "subscribe", "payload": {"query": query}})
