"""What the email feedback tests share: real signing keys for each provider, a local HTTPS
server standing in for SNS (signing certificates and subscription confirmations), an API
configured with those keys, and sent email deliveries in the real history store."""

from __future__ import annotations

import base64
import ssl
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from backend.config import Settings
from backend.db.history.base import DeliveryRecord, DeliveryStatus, HistoryStore, StatusChange
from backend.db.models import EmailSuppression
from backend.schema.context import Services
from tests.conftest import in_process_client, make_services, make_settings, started_app
from tests.factories import make_delivery, self_signed, tls_files

POSTMARK_USER = "postmark-hook"
POSTMARK_PASSWORD = "s3cret-basic-auth-0123456789"
MAILGUN_KEY = "key-mailgun-webhook-signing-0123456789"
BOUNCE_DOMAIN = "bounces.herald.test"


@dataclass
class SnsHost:
    """An HTTPS server on localhost playing SNS: serves the signing certificate and records
    the subscription confirmations (GETs of SubscribeURL)."""

    signing_key: rsa.RSAPrivateKey
    signing_cert_pem: bytes
    ca_file: Path
    port: int = 0
    confirmations: list[str] = field(default_factory=list)
    cert_fetches: int = 0

    @property
    def base_url(self) -> str:
        return f"https://localhost:{self.port}"

    @property
    def cert_url(self) -> str:
        return f"{self.base_url}/SimpleNotificationService-test.pem"


@pytest.fixture(scope="session")
def sns_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SnsHost]:
    directory = tmp_path_factory.mktemp("sns")
    cert_path, key_path = tls_files(directory, "localhost")
    signing_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    signing_cert = self_signed(signing_key, "sns.amazonaws.com", ca=False)
    host = SnsHost(
        signing_key=signing_key,
        signing_cert_pem=signing_cert.public_bytes(serialization.Encoding.PEM),
        ca_file=cert_path,
    )

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.endswith(".pem"):
                host.cert_fetches += 1
                body = host.signing_cert_pem
            elif self.path.startswith("/confirm"):
                host.confirmations.append(self.path)
                body = b"<ConfirmSubscriptionResponse/>"
            else:
                self.send_response(404)
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_path, key_path)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    host.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    yield host
    server.shutdown()
    server.server_close()


@dataclass(frozen=True)
class SendGridKeys:
    private: ec.EllipticCurvePrivateKey
    public_base64: str  # as SendGrid shows its verification key: base64 DER


@pytest.fixture(scope="session")
def sendgrid_keys() -> SendGridKeys:
    private = ec.generate_private_key(ec.SECP256R1())
    der = private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return SendGridKeys(private, base64.b64encode(der).decode())


@pytest.fixture(scope="session")
def feedback_settings(sns_host: SnsHost, sendgrid_keys: SendGridKeys) -> Settings:
    return make_settings(
        sns_allowed_host_pattern="localhost",
        sns_ca_file=str(sns_host.ca_file),
        sendgrid_webhook_public_key=sendgrid_keys.public_base64,
        postmark_webhook_username=POSTMARK_USER,
        postmark_webhook_password=POSTMARK_PASSWORD,
        mailgun_webhook_signing_key=MAILGUN_KEY,
        email_bounce_domain=BOUNCE_DOMAIN,
    )


@pytest.fixture(scope="session")
async def feedback_services(feedback_settings: Settings, engine: AsyncEngine) -> Services:
    return make_services(feedback_settings, engine)


@pytest.fixture(scope="session")
async def feedback_app(
    feedback_settings: Settings, feedback_services: Services
) -> AsyncIterator[Any]:
    async with started_app(feedback_settings, feedback_services) as application:
        yield application


@pytest.fixture
async def provider_client(
    feedback_app: Any,
    feedback_services: Services,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> AsyncIterator[httpx.AsyncClient]:
    async with in_process_client(feedback_app, feedback_services, sessionmaker) as client:
        yield client


@pytest.fixture
def history(feedback_app: Any, feedback_services: Services) -> HistoryStore:
    """The API's history store (the app started)."""
    return feedback_services.clients.history


async def sent_email(history: HistoryStore, *, user_id: str = "user-bounce") -> DeliveryRecord:
    """An email delivery in the history store, ``sent``."""
    now = datetime.now(UTC)
    record = make_delivery(
        str(uuid.uuid4()),
        event_id=str(uuid.uuid4()),
        event_type="movie_added",
        user_id=user_id,
        created_at=now,
        status=DeliveryStatus.SENT,
        timeline=[
            StatusChange(DeliveryStatus.QUEUED, now),
            StatusChange(DeliveryStatus.SENDING, now),
            StatusChange(DeliveryStatus.SENT, now),
        ],
    )
    assert await history.add([record]) == 1
    return record


def unique_address(label: str) -> str:
    return f"{label}-{uuid.uuid4().hex[:8]}@example.org"


@pytest.fixture
async def committed_suppressions(engine: AsyncEngine) -> AsyncIterator[list[str]]:
    """Addresses a test suppresses outside its transaction, removed afterwards."""
    addresses: list[str] = []
    yield addresses
    if addresses:
        async with engine.begin() as conn:
            await conn.execute(
                delete(EmailSuppression).where(EmailSuppression.address.in_(addresses))
            )
