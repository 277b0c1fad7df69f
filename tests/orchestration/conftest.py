"""Failover, unsubscribe and status webhooks end to end: a real Celery worker configured with
two SMTP relays and two SMS providers (real servers), a real webhook receiver, the auth-service
stand-in, and the API in-process on committed sessions.

The suite has its own RabbitMQ virtual host and Redis database: the pipeline suite's worker
(other settings, no fallbacks) must never take this suite's tasks, nor share its breakers.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.app import create_app
from backend.auth import TokenVerifier
from backend.broker import purge_work_queues
from backend.config import Settings
from backend.db.session import create_sessionmaker
from backend.schema.context import Services
from tests.conftest import TEST_DATABASE_URL, TEST_RABBITMQ_URL, GraphQL, make_settings
from tests.http_stubs import QuietHandler, serve
from tests.orchestration.helpers import CREATE, DELETE, admin

# auth_standin: a fixture; default_preferences: autouse, each test starts with the stand-in's
# users on default preferences (a test that opts one out must not skip the next one's sends).
from tests.pipeline.conftest import (  # noqa: F401
    JWT_SECRET,
    auth_standin,
    default_preferences,
)
from tests.pipeline.servers import SmtpSink, start_smtp
from tests.processes import Process

RABBITMQ_URL = f"{TEST_RABBITMQ_URL}_orchestration"
REDIS_URL = os.environ.get("HERALD_TEST_ORCHESTRATION_REDIS_URL", "redis://127.0.0.1:6379/12")
UNSUBSCRIBE_SECRET = "test-unsubscribe-secret-0123456789abcdef"
PUBLIC_URL = "http://herald.test"
TRACKING_SECRET = "test-tracking-secret-0123456789abcdef"


def _ensure_vhost(url: str) -> None:
    vhost = url.rsplit("/", 1)[1]
    ctl = shutil.which("rabbitmqctl") or "/usr/sbin/rabbitmqctl"
    if not Path(ctl).exists():
        pytest.fail(f"rabbitmqctl is missing: create the vhost {vhost} by hand")
    listed = subprocess.run(
        [ctl, "-q", "list_vhosts"], capture_output=True, text=True, timeout=30, check=True
    )
    if vhost not in listed.stdout.split():
        subprocess.run([ctl, "-q", "add_vhost", vhost], capture_output=True, timeout=30, check=True)
        subprocess.run(
            [ctl, "-q", "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"],
            capture_output=True,
            timeout=30,
            check=True,
        )


@dataclass
class Smtp:
    sink: SmtpSink
    port: int


@pytest.fixture(scope="session")
def relay_a() -> Iterator[Smtp]:
    """The primary SMTP relay."""
    controller, sink = start_smtp()
    yield Smtp(sink, controller.port)
    controller.stop()


@pytest.fixture(scope="session")
def relay_b() -> Iterator[Smtp]:
    """The fallback SMTP relay."""
    controller, sink = start_smtp()
    yield Smtp(sink, controller.port)
    controller.stop()


@dataclass
class HttpEndpoint:
    """An HTTP server standing in for an SMS provider or a webhook receiver: records every
    request, answers ``status`` (``fail_next[path]`` requests to a path get ``fail_with``
    first) with a provider-style JSON body."""

    url: str = ""
    status: int = 200
    fail_next: dict[str, int] = field(default_factory=dict)
    fail_with: int = 500
    requests: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def received(self, path: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            return [r for r in self.requests if path is None or r["path"] == path]


@contextmanager
def _serving(state: HttpEndpoint) -> Iterator[HttpEndpoint]:
    """``state`` answered by a real HTTP server until the block ends."""

    class Handler(QuietHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            with state.lock:
                status = state.status
                if state.fail_next.get(self.path, 0) > 0:
                    state.fail_next[self.path] -= 1
                    status = state.fail_with
                state.requests.append(
                    {
                        "path": self.path,
                        "headers": {k.lower(): v for k, v in self.headers.items()},
                        "body": body,
                        "answered": status,
                    }
                )
                answer = {"id": f"msg-{len(state.requests)}"}
            self.reply_json(status, answer)

    server, state.url = serve(Handler)
    try:
        yield state
    finally:
        server.shutdown()


@pytest.fixture(scope="session")
def sms_a() -> Iterator[HttpEndpoint]:
    """The primary SMS provider."""
    with _serving(HttpEndpoint()) as state:
        yield state


@pytest.fixture(scope="session")
def sms_b() -> Iterator[HttpEndpoint]:
    """The fallback SMS provider."""
    with _serving(HttpEndpoint()) as state:
        yield state


SLACK_TOKENS = {"slack-a": "xoxb-a-111", "slack-b": "xoxb-b-222"}
TELEGRAM_TOKEN = "4242:telegram-test-token"
WEBHOOK_CHANNEL_SECRET = "whsec_" + "d2ViaG9vay1jaGFubmVsLXRlc3Qtc2VjcmV0LTEyMzQ="
FCM_PROJECT = "herald-e2e"
FCM_ACCESS_TOKEN = "ya29.e2e-access-token"
FCM_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def fcm_service_account(token_uri: str) -> str:
    pem = FCM_KEY.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return json.dumps(
        {
            "type": "service_account",
            "client_email": f"herald@{FCM_PROJECT}.iam.gserviceaccount.com",
            "private_key": pem,
            "token_uri": token_uri,
        }
    )


@dataclass
class ChatApi:
    """One HTTP server playing Slack's Web API (two workspaces' bots: ``/slack-a/api``,
    ``/slack-b/api``) and Telegram's Bot API (``/telegram``), answering as each does. A bot
    whose token does not match answers as Slack or Telegram does; ``fail_next[path]``
    requests to a path get a 503 first."""

    url: str = ""
    fail_next: dict[str, int] = field(default_factory=dict)
    requests: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def received(self, path: str) -> list[dict[str, Any]]:
        with self.lock:
            return [r for r in self.requests if r["path"] == path]

    def answer(self, path: str, headers: dict[str, str], body: Any) -> tuple[int, Any]:
        if self.fail_next.get(path, 0) > 0:
            self.fail_next[path] -= 1
            return 503, {"ok": False, "error": "service_unavailable"}
        for name, token in SLACK_TOKENS.items():
            if path == f"/{name}/api/chat.postMessage":
                if headers.get("authorization") != f"Bearer {token}":
                    return 200, {"ok": False, "error": "invalid_auth"}
                if str(body.get("channel", "")).startswith("C-GONE"):
                    return 200, {"ok": False, "error": "channel_not_found"}
                return 200, {
                    "ok": True,
                    "channel": body["channel"],
                    "ts": f"17000.{len(self.requests)}",
                }
        if path.startswith("/hooks/"):  # the webhook channel's receivers
            return 200, {"received": True}
        if path == "/fcm/token":  # Google's OAuth2 token endpoint (a form body, see do_POST)
            claims = jwt.decode(
                body["assertion"][0],
                FCM_KEY.public_key(),
                algorithms=["RS256"],
                audience=f"{self.url}/fcm/token",
            )
            if claims["iss"] != f"herald@{FCM_PROJECT}.iam.gserviceaccount.com":
                return 400, {"error": "invalid_grant"}
            return 200, {"access_token": FCM_ACCESS_TOKEN, "expires_in": 3599}
        if path == f"/fcm/v1/projects/{FCM_PROJECT}/messages:send":
            if headers.get("authorization") != f"Bearer {FCM_ACCESS_TOKEN}":
                return 401, {"error": {"code": 401, "status": "UNAUTHENTICATED"}}
            token = body["message"]["token"]
            if token.startswith("gone-"):
                return 404, {
                    "error": {
                        "code": 404,
                        "message": "Requested entity was not found.",
                        "status": "NOT_FOUND",
                        "details": [
                            {
                                "@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError",
                                "errorCode": "UNREGISTERED",
                            }
                        ],
                    }
                }
            return 200, {"name": f"projects/{FCM_PROJECT}/messages/{len(self.requests)}"}
        if path == f"/telegram/bot{TELEGRAM_TOKEN}/sendMessage":
            if body.get("parse_mode") != "HTML":
                return 400, {"ok": False, "error_code": 400, "description": "Bad Request"}
            if str(body.get("chat_id", "")).startswith("999"):  # users who blocked the bot
                return 403, {
                    "ok": False,
                    "error_code": 403,
                    "description": "Forbidden: bot was blocked by the user",
                }
            return 200, {"ok": True, "result": {"message_id": len(self.requests)}}
        return 404, {"ok": False, "error_code": 404, "description": "Not Found"}


@pytest.fixture(scope="session")
def chat_api() -> Iterator[ChatApi]:
    state = ChatApi()

    class Handler(QuietHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("content-length") or 0))
            headers = {k.lower(): v for k, v in self.headers.items()}
            with state.lock:
                if headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
                    body: Any = parse_qs(raw.decode())
                else:
                    body = json.loads(raw)
                status, answer = state.answer(self.path, headers, body)
                state.requests.append(
                    {
                        "path": self.path,
                        "headers": headers,
                        "body": body,
                        "raw": raw,
                        "answered": status,
                    }
                )
            self.reply_json(status, answer, "application/json; charset=utf-8")

    server, state.url = serve(Handler)
    yield state
    server.shutdown()


@pytest.fixture(scope="session")
def receiver() -> Iterator[HttpEndpoint]:
    """Webhook endpoints (one path each)."""
    with _serving(HttpEndpoint(status=204)) as state:
        yield state


Register = Callable[..., Awaitable[dict[str, Any]]]


@pytest.fixture
async def register(api: GraphQL, receiver: HttpEndpoint) -> AsyncIterator[Register]:
    """Registers endpoints on the receiver (one path each) and deletes them after the test:
    the database is shared with other suites' workers."""
    created: list[str] = []

    async def make(**fields: Any) -> dict[str, Any]:
        path = f"/hooks/{uuid.uuid4().hex[:8]}"
        data = {"url": f"{receiver.url}{path}", **fields}
        body = await api(CREATE, {"input": data}, token=admin(api.settings))
        endpoint = body["data"]["createWebhookEndpoint"]
        assert endpoint["__typename"] == "WebhookEndpoint", body
        created.append(endpoint["id"])
        # Workers read the active endpoints at most every HERALD_WEBHOOK_CACHE_SECONDS (0.2 s
        # in this suite): a change announced sooner may go by the list read before this one.
        await asyncio.sleep(0.3)
        return {**endpoint, "path": path}

    yield make
    for endpoint_id in created:
        await api(DELETE, {"id": endpoint_id}, token=admin(api.settings))


def _suite_values(relay_b: Smtp, sms_b: HttpEndpoint, chat: ChatApi) -> dict[str, str]:
    """Settings the worker and the in-process API share (as one .env would give them)."""
    return {
        "HERALD_SLACK_PROVIDERS": json.dumps(
            [
                {"name": name, "token": token, "url": f"{chat.url}/{name}/api"}
                for name, token in SLACK_TOKENS.items()
            ]
        ),
        "HERALD_TELEGRAM_PROVIDERS": json.dumps(
            [{"name": "telegram", "token": TELEGRAM_TOKEN, "url": f"{chat.url}/telegram"}]
        ),
        "HERALD_WEBHOOK_CHANNEL_SECRET": WEBHOOK_CHANNEL_SECRET,
        "HERALD_FCM_PROVIDERS": json.dumps(
            [
                {
                    "name": "fcm",
                    "project_id": FCM_PROJECT,
                    "service_account": fcm_service_account(f"{chat.url}/fcm/token"),
                    "url": f"{chat.url}/fcm",
                }
            ]
        ),
        "HERALD_WEBHOOK_CHANNEL_TARGETS": json.dumps({"order_shipped": f"{chat.url}/hooks/orders"}),
        "HERALD_RABBITMQ_URL": RABBITMQ_URL,
        "HERALD_REDIS_URL": REDIS_URL,
        "HERALD_SMTP_FALLBACKS": json.dumps(
            [{"name": "relay-b", "host": "127.0.0.1", "port": relay_b.port}]
        ),
        "HERALD_SMS_FALLBACKS": json.dumps([{"name": "sms-b", "url": f"{sms_b.url}/sms"}]),
        "HERALD_BREAKER_FAILURE_THRESHOLD": "2",
        "HERALD_BREAKER_OPEN_SECONDS": "3",
        "HERALD_PUBLIC_URL": PUBLIC_URL,
        "HERALD_UNSUBSCRIBE_SECRET": UNSUBSCRIBE_SECRET,
        "HERALD_UNSUBSCRIBE_MAILTO": "unsubscribe@herald.test",
        "HERALD_EMAIL_TRACK_OPENS": "true",
        "HERALD_EMAIL_TRACK_CLICKS": "true",
        "HERALD_TRACKING_SECRET": TRACKING_SECRET,
        "HERALD_WEBHOOK_RETRY_BASE_SECONDS": "0.5",
        "HERALD_WEBHOOK_RETRY_MAX_SECONDS": "1",
        "HERALD_WEBHOOK_MAX_ATTEMPTS": "4",
        "HERALD_WEBHOOK_TIMEOUT_SECONDS": "1",
        "HERALD_WEBHOOK_CACHE_SECONDS": "0.2",
    }


@pytest.fixture(scope="session")
def suite_settings(
    relay_a: Smtp, relay_b: Smtp, sms_a: HttpEndpoint, sms_b: HttpEndpoint, chat_api: ChatApi
) -> Settings:
    values = _suite_values(relay_b, sms_b, chat_api)
    return make_settings(
        rabbitmq_url=RABBITMQ_URL,
        redis_url=REDIS_URL,
        smtp_port=relay_a.port,
        sms_provider_url=f"{sms_a.url}/sms",
        smtp_fallbacks=json.loads(values["HERALD_SMTP_FALLBACKS"]),
        sms_fallbacks=json.loads(values["HERALD_SMS_FALLBACKS"]),
        slack_providers=json.loads(values["HERALD_SLACK_PROVIDERS"]),
        telegram_providers=json.loads(values["HERALD_TELEGRAM_PROVIDERS"]),
        webhook_channel_secret=WEBHOOK_CHANNEL_SECRET,
        fcm_providers=json.loads(values["HERALD_FCM_PROVIDERS"]),
        webhook_channel_targets=json.loads(values["HERALD_WEBHOOK_CHANNEL_TARGETS"]),
        breaker_failure_threshold=2,
        breaker_open_seconds=3,
        public_url=PUBLIC_URL,
        unsubscribe_secret=UNSUBSCRIBE_SECRET,
        unsubscribe_mailto="unsubscribe@herald.test",
        email_track_opens=True,
        email_track_clicks=True,
        tracking_secret=TRACKING_SECRET,
    )


@pytest.fixture(scope="package")  # stopped when these tests end: later ones share the database
def worker(
    engine: AsyncEngine,
    relay_a: Smtp,
    relay_b: Smtp,
    sms_a: HttpEndpoint,
    sms_b: HttpEndpoint,
    chat_api: ChatApi,
    auth_standin: str,  # noqa: F811 - the imported fixture
) -> Iterator[Process]:
    _ensure_vhost(RABBITMQ_URL)
    asyncio.run(purge_work_queues(RABBITMQ_URL))
    env = {
        **os.environ,
        "HERALD_ENVIRONMENT": "test",
        "HERALD_DATABASE_URL": TEST_DATABASE_URL,
        "HERALD_JWT_SECRET": JWT_SECRET,
        "HERALD_AUTH_URL": auth_standin,
        "HERALD_SMTP_HOST": "127.0.0.1",
        "HERALD_SMTP_PORT": str(relay_a.port),
        "HERALD_SMTP_TIMEOUT_SECONDS": "2",
        "HERALD_SMS_PROVIDER_URL": f"{sms_a.url}/sms",
        "HERALD_SMS_TIMEOUT_SECONDS": "2",
        "HERALD_RETRY_BASE_SECONDS": "0.3",
        "HERALD_RETRY_MAX_SECONDS": "1",
        "HERALD_DELIVERY_MAX_ATTEMPTS": "4",
        "HERALD_DELIVERY_LEASE_SECONDS": "2",
        "HERALD_WORKER_METRICS_PORT": "0",
        "HERALD_LOG_LEVEL": "INFO",
        **_suite_values(relay_b, sms_b, chat_api),
    }
    process = Process(["worker", "--concurrency", "2"], env, ready="ready.")
    yield process
    process.stop()


@pytest.fixture
async def redis() -> AsyncIterator[Redis]:
    client = Redis.from_url(REDIS_URL)
    yield client
    await client.aclose()


@pytest.fixture(autouse=True)
async def _fresh_breakers(redis: Redis) -> None:
    """Every test starts with closed breakers: the suite's Redis database is its own."""
    keys = [k async for k in redis.scan_iter("herald:providers:*")]
    if keys:
        await redis.delete(*keys)


@pytest.fixture(scope="session")
async def suite_app(suite_settings: Settings, engine: AsyncEngine) -> AsyncIterator[Any]:
    # The vhost first: an app whose broker cannot connect at start answers UNAVAILABLE until
    # its background reconnect succeeds.
    _ensure_vhost(RABBITMQ_URL)
    services = Services(
        settings=suite_settings,
        verifier=TokenVerifier(suite_settings),
        sessionmaker=create_sessionmaker(engine),
        engine=engine,
    )
    application = create_app(suite_settings, services=services)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def http(suite_app: Any, worker: Process) -> AsyncIterator[httpx.AsyncClient]:
    """HTTP on the in-process API (committed writes: the worker sees them)."""
    transport = httpx.ASGITransport(app=suite_app)
    async with httpx.AsyncClient(transport=transport, base_url=PUBLIC_URL) as client:
        yield client


@pytest.fixture
def api(http: httpx.AsyncClient, suite_settings: Settings) -> GraphQL:
    return GraphQL(http, suite_settings)
