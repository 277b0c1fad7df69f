"""A real HTTP/2 server (the h2 library over asyncio, cleartext with prior knowledge) standing
in for APNs, which speaks nothing else: records each request, answers with ``respond``."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import DataReceived, RequestReceived, StreamEnded

from tests.channels.conftest import ReceivedRequest

H2Request = ReceivedRequest  # what the HTTP/1.1 stand-ins record, over HTTP/2


@dataclass
class H2Reply:
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


class H2Server:
    """Serves on 127.0.0.1 (a free port) in the test's event loop."""

    def __init__(self) -> None:
        self.requests: list[H2Request] = []
        self.respond: Callable[[H2Request], H2Reply] = lambda request: H2Reply()
        self._server: asyncio.Server | None = None
        self.url = ""

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connection = H2Connection(H2Configuration(client_side=False, header_encoding="utf-8"))
        connection.initiate_connection()
        writer.write(connection.data_to_send())
        streams: dict[int, tuple[dict[str, str], bytearray]] = {}
        try:
            while data := await reader.read(65536):
                for event in connection.receive_data(data):
                    if isinstance(event, RequestReceived):
                        streams[event.stream_id] = (dict(event.headers), bytearray())
                    elif isinstance(event, DataReceived):
                        streams[event.stream_id][1].extend(event.data)
                        connection.acknowledge_received_data(
                            event.flow_controlled_length, event.stream_id
                        )
                    elif isinstance(event, StreamEnded):
                        headers, body = streams.pop(event.stream_id)
                        self._answer(connection, event.stream_id, headers, bytes(body))
                writer.write(connection.data_to_send())
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    def _answer(
        self, connection: H2Connection, stream_id: int, headers: dict[str, str], body: bytes
    ) -> None:
        request = H2Request(
            method=headers.pop(":method"),
            path=headers.pop(":path"),
            headers={k: v for k, v in headers.items() if not k.startswith(":")},
            body=body,
        )
        self.requests.append(request)
        reply = self.respond(request)
        payload = b"" if reply.body is None else json.dumps(reply.body).encode()
        response_headers = [(":status", str(reply.status)), *reply.headers.items()]
        if payload:
            response_headers.append(("content-type", "application/json"))
        response_headers.append(("content-length", str(len(payload))))
        connection.send_headers(stream_id, response_headers, end_stream=not payload)
        if payload:
            connection.send_data(stream_id, payload, end_stream=True)
