"""uvicorn's WebSocket protocol, reached from a Starlette ``WebSocket``."""

from __future__ import annotations

import contextlib
from typing import Any

from starlette.websockets import WebSocket


def uvicorn_protocol(socket: WebSocket) -> Any | None:
    """The uvicorn protocol object serving ``socket`` (under another server, the object
    whose method is the ASGI ``send``, or None).

    Written against Starlette 1.10 and uvicorn 0.54 (``ws="websockets-sansio"``, as
    ``herald api`` runs it): Starlette keeps the ASGI ``send`` callable as ``WebSocket._send``,
    and uvicorn's ``send`` is the bound method ``protocol.send``, whose ``__self__`` is the
    protocol.
    """
    return getattr(socket._send, "__self__", None)


def release_uvicorn_handshake(socket: WebSocket) -> bool:
    """Drop the handshake's request and response that uvicorn keeps on the protocol for the
    life of the connection (a few KB of headers per socket); True when there was one to drop.

    Written against uvicorn 0.54's ``WebSocketsSansIOProtocol``: after the accept,
    ``handshake_complete`` is True and ``request`` / ``response`` hold the websockets
    ``Request`` / ``Response`` objects, read by nothing after the accept. The request is also
    held by the protocol parser's frame, so its headers are emptied as well.
    """
    protocol = uvicorn_protocol(socket)
    if not getattr(protocol, "handshake_complete", False):
        return False
    for name in ("request", "response"):
        message = getattr(protocol, name, None)
        if message is not None:
            with contextlib.suppress(AttributeError):
                message.headers.clear()
            setattr(protocol, name, None)
    return True
