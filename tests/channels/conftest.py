"""Real servers for the channel tests: an SMTP server (aiosmtpd), an HTTP server standing in for
the SMS provider and the push service, TLS material. No database is involved."""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from backend.channels import Channel
from backend.channels.base import ChannelSender, OutgoingMessage, Recipient, UnsubscribeLinks
from backend.config import Settings
from tests.factories import tls_files as tls_files_in

SMTP_USER = "herald"
SMTP_PASSWORD = "s3cret-relay-password"


def channel_settings(**overrides: Any) -> Settings:
    """Settings for a sender under test; every address points at a server the test started.

    Built here rather than with the suite's ``make_settings`` so these tests load no database
    configuration and ignore any ``.env``."""
    values: dict[str, Any] = {
        "environment": "test",
        "jwt_secret": "channel-tests-secret-0123456789abcdef",
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)


def outgoing(channel: Channel, **overrides: Any) -> OutgoingMessage:
    """A rendered message for Ada on ``channel``; keyword arguments replace any field."""
    values: dict[str, Any] = {
        "delivery_id": "d-0001",
        "event_id": "e-0001",
        "event_type": "user_registered",
        "channel": channel,
        "user": Recipient(
            id="user-42",
            email="ada@example.org",
            first_name="Ada",
            last_name="Lovelace",
            phone="+15550100",
        ),
        "subject": "Welcome, Ada!",
        "title": "Welcome!",
        "body": "Hello Ada, thanks for joining.",
        "html": "<p>Hello <b>Ada</b></p>",
        "data": {"url": "/welcome", "n": 1},
        "unsubscribe": UnsubscribeLinks(
            page_url="https://herald.example/preferences/t0k",
            one_click_url="https://herald.example/unsubscribe/t0k",
            mailto=None,
            one_click_body="List-Unsubscribe=One-Click",
        ),
    }
    values.update(overrides)
    return OutgoingMessage(**values)


@asynccontextmanager
async def running(sender: ChannelSender) -> AsyncIterator[ChannelSender]:
    """``sender`` between ``start()`` and ``close()``."""
    await sender.start()
    try:
        yield sender
    finally:
        await sender.close()


# --- TLS ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TlsFiles:
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self.key)
        return context

    def client_context(self) -> ssl.SSLContext:
        """Trusts only this certificate, with hostname checks on: what a relay with a private
        CA looks like to the sender."""
        return ssl.create_default_context(cafile=str(self.cert))


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A self-signed certificate for 127.0.0.1 and localhost."""
    return TlsFiles(*tls_files_in(tmp_path_factory.mktemp("tls"), "herald-test-smtp"))


# --- SMTP --------------------------------------------------------------------------------------


class MailRecorder:
    """An aiosmtpd handler that keeps what it receives and can be told how to answer."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        # Each message as it came over the wire (DATA, dot-unstuffed).
        self.raw: list[bytes] = []
        self.envelopes: list[tuple[str | None, list[str]]] = []
        # Peers that started a mail transaction: one per connection the sender used.
        self.peers: set[Any] = set()
        # Answered once to the next MAIL, then back to normal.
        self.mail_reply_once: str | None = None
        self.rcpt_reply: str | None = None
        self.data_reply: str | None = None
        self.data_delay = 0.0
        self.logins: list[str] = []

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        self.peers.add(session.peer)
        if self.mail_reply_once is not None:
            reply, self.mail_reply_once = self.mail_reply_once, None
            return reply
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if self.rcpt_reply is not None:
            return self.rcpt_reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.data_delay:
            await asyncio.sleep(self.data_delay)
        if self.data_reply is not None:
            return self.data_reply
        content = envelope.original_content or b""
        parsed = message_from_bytes(content, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        self.messages.append(parsed)
        self.raw.append(content)
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        return "250 Message accepted for delivery"

    def authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        ok = (
            isinstance(data, LoginPassword)
            and data.login.decode() == SMTP_USER
            and data.password.decode() == SMTP_PASSWORD
        )
        if ok:
            self.logins.append(data.login.decode())
        return AuthResult(success=ok, handled=False)


class _FreePortController(Controller):
    """aiosmtpd's threaded controller, listening on a port the OS picks (port 0)."""

    def _create_server(self) -> Any:
        async def create() -> asyncio.AbstractServer:
            server = await self.loop.create_server(
                self._factory_invoker, host=self.hostname, port=self.port, ssl=self.ssl_context
            )
            self.port = server.sockets[0].getsockname()[1]
            return server

        return create()


class SmtpServer:
    """A real SMTP server on 127.0.0.1 that can be stopped and started again on its port."""

    def __init__(self, **controller_kwargs: Any) -> None:
        self.recorder = MailRecorder()
        self._kwargs = controller_kwargs
        self.port = 0
        self._controller: Controller | None = None

    def start(self) -> None:
        kwargs = dict(self._kwargs)
        if kwargs.pop("with_auth", False):
            kwargs.update(authenticator=self.recorder.authenticate, auth_required=True)
        self._controller = _FreePortController(
            self.recorder, hostname="127.0.0.1", port=self.port, **kwargs
        )
        self._controller.start()
        self.port = self._controller.port

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> SmtpServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def settings(self, **overrides: Any) -> Settings:
        values: dict[str, Any] = {"smtp_host": "127.0.0.1", "smtp_port": self.port}
        values.update(overrides)
        return channel_settings(**values)


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    with SmtpServer() as server:
        yield server


# --- HTTP --------------------------------------------------------------------------------------


@dataclass
class ReceivedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Reply:
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    # A plain-text answer instead of JSON (Slack's incoming webhooks answer "ok").
    text: str | None = None


class HttpService:
    """A real HTTP server in a thread: records every request and answers with ``respond``."""

    def __init__(self) -> None:
        self.requests: list[ReceivedRequest] = []
        self.respond: Callable[[ReceivedRequest], Reply] = lambda request: Reply()
        service = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                request = ReceivedRequest(
                    "POST",
                    self.path,
                    {k.lower(): v for k, v in self.headers.items()},
                    self.rfile.read(length),
                )
                service.requests.append(request)
                reply = service.respond(request)
                if reply.delay:
                    time.sleep(reply.delay)
                if reply.text is not None:
                    body, content_type = reply.text.encode(), "text/plain; charset=utf-8"
                else:
                    body = b"" if reply.body is None else json.dumps(reply.body).encode()
                    content_type = "application/json"
                self.send_response(reply.status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            block_on_close = False

            def handle_error(self, request: Any, client_address: Any) -> None:
                # A client that timed out and hung up is what some tests want.
                pass

        self._server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        # A short poll interval: shutdown() waits for it, once per test.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> HttpService:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


@pytest.fixture
def http_service() -> Iterator[HttpService]:
    with HttpService() as service:
        yield service


@pytest.fixture
def second_service() -> Iterator[HttpService]:
    """Another provider's server, for failover from ``http_service``."""
    with HttpService() as service:
        yield service


def closed_port() -> int:
    """A port nothing listens on: the OS hands out a free one, and it is released at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
