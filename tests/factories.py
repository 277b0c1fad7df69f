"""Typed factories for test data and tokens."""

from __future__ import annotations

import ipaddress
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.auth import mint_token
from backend.channels import Channel
from backend.channels.base import ChannelSender
from backend.config import Settings
from backend.db.history.base import Attempt, DeliveryRecord, DeliveryStatus, HistoryStore
from backend.db.history.postgres import PostgresHistoryStore
from backend.db.session import create_sessionmaker
from backend.services.deliveries import DeliveryContext, DeliveryQueue, Envelope, delivery_id
from backend.services.deliveries.context import UserLookup
from backend.services.live import RedisLivePublisher
from backend.services.users import UserProfile
from backend.workers import units


def token_for(
    settings: Settings,
    *roles: str,
    sub: str = "user-1",
    ttl: int = 600,
    tenant: str | None = None,
) -> str:
    """A token for ``sub`` with ``roles``; ``tenant`` binds it to that tenant."""
    return mint_token(settings, sub=sub, roles=roles, ttl=timedelta(seconds=ttl), tenant=tenant)


def auth_header(settings: Settings, *roles: str, sub: str = "user-1") -> dict[str, str]:
    return {"Authorization": f"Bearer {token_for(settings, *roles, sub=sub)}"}


def template_input(
    slug: str = "greeting",
    *,
    name: str = "Welcome",
    content: list[dict[str, Any]] | None = None,
    description: str = "",
) -> dict[str, Any]:
    return {
        "slug": slug,
        "name": name,
        "description": description,
        "content": content
        if content is not None
        else [
            {
                "channel": "EMAIL",
                "locale": "en",
                "subject": "Welcome, {{ user.first_name }}!",
                "body": "Hello {{ user.first_name }}, thanks for joining {{ payload.site }}.",
                "html": "<p>Hello <b>{{ user.first_name }}</b> from {{ payload.site }}</p>",
            },
            {
                "channel": "IN_APP",
                "locale": "en",
                "title": "Welcome!",
                "body": "Glad you are here, {{ user.first_name }}.",
            },
        ],
    }


TEMPLATE_FIELDS = """
    ... on Template { id slug name description version variables
        content { channel locale subject title body html } }
    ... on Error { __typename code message field }
    ... on TemplateSyntaxError { line }
"""

CREATE_TEMPLATE = (
    "mutation($input: CreateTemplateInput!) { createTemplate(input: $input) { __typename "
    + TEMPLATE_FIELDS
    + " } }"
)
UPDATE_TEMPLATE = (
    "mutation($slug: String!, $input: UpdateTemplateInput!) { updateTemplate(slug: $slug, "
    "input: $input) { __typename " + TEMPLATE_FIELDS + " } }"
)


def fresh_window(minimum: int = 3600, *, room: int = 600) -> int:
    """A length in seconds for a throttle or budget window that counts from an empty, fixed
    window lasting at least ``room`` more seconds. Limit windows are aligned to the epoch:
    with a fixed length, a test's sends could straddle a window's end (the later ones counted
    afresh), and a rerun could find the earlier run's counts."""
    now = time.time()
    length = minimum + secrets.randbelow(10_000)
    while now % length > length - room:
        length += 1
    return length


def make_delivery(
    id: str = "d-1",
    *,
    user_id: str = "u-1",
    event_id: str = "e-1",
    channel: Channel = Channel.EMAIL,
    status: DeliveryStatus = DeliveryStatus.QUEUED,
    created_at: datetime = datetime(2026, 3, 1, 12, 0, tzinfo=UTC),
    event_type: str = "user_registered",
    campaign_id: str | None = None,
    **fields: Any,
) -> DeliveryRecord:
    """A delivery as dispatch creates it: queued, nothing rendered, no timeline yet;
    keyword arguments set any other field."""
    return DeliveryRecord(
        id=id,
        event_id=event_id,
        event_type=event_type,
        user_id=user_id,
        channel=channel,
        created_at=created_at,
        updated_at=fields.pop("updated_at", created_at),
        status=status,
        campaign_id=campaign_id,
        **fields,
    )


def tried_delivery(
    id: str,
    created_at: datetime,
    channel: Channel,
    status: DeliveryStatus,
    event_type: str,
    providers: Sequence[tuple[str, bool]] = (),
    campaign_id: str | None = None,
) -> DeliveryRecord:
    """A delivery in the history, tried once per (provider, succeeded), in that order."""
    return DeliveryRecord(
        id=id,
        event_id=f"e-{id}",
        event_type=event_type,
        user_id="demo-user-emma",
        channel=channel,
        created_at=created_at,
        updated_at=created_at,
        status=status,
        campaign_id=campaign_id,
        attempts=[
            Attempt(n, created_at, provider=p, error=None if ok else "refused")
            for n, (p, ok) in enumerate(providers, start=1)
        ],
    )


def self_signed(key: Any, common_name: str, *, ca: bool) -> x509.Certificate:
    """A certificate for ``key`` signed by itself, valid from five minutes ago for a day; a
    ``ca`` one for localhost and 127.0.0.1 too, which a client can trust as its only CA."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
    )
    if ca:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        ).add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    return builder.sign(key, hashes.SHA256())


def tls_files(directory: Path, common_name: str) -> tuple[Path, Path]:
    """A new EC key and its self-signed CA certificate (see :func:`self_signed`) written as
    PEM in ``directory``: (certificate, key)."""
    key = ec.generate_private_key(ec.SECP256R1())
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(self_signed(key, common_name, ca=True).public_bytes(Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


def rsa_key_pair() -> tuple[str, str]:
    """A new RSA key pair as PEM text: (private, public)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


class NoDirectory:
    """A user directory for deliveries whose profiles are handed over with the event."""

    async def get_many(self, user_ids: Sequence[str]) -> dict[str, UserProfile | None]:
        raise AssertionError(f"profiles were handed over; asked for {user_ids}")


def delivery_context(
    settings: Settings,
    engine: AsyncEngine,
    redis: Redis | None,
    *,
    queue: DeliveryQueue,
    users: UserLookup | None = None,
    history: HistoryStore | None = None,
    senders: dict[Channel, ChannelSender] | None = None,
) -> DeliveryContext:
    """A worker's delivery context on the test database, publishing live messages to the test
    Redis (none without ``redis``); ``users`` defaults to :class:`NoDirectory`, ``history`` to
    the PostgreSQL store."""
    return DeliveryContext(
        settings=settings,
        sessionmaker=create_sessionmaker(engine),
        history=history or PostgresHistoryStore(engine),
        queue=queue,
        users=users or NoDirectory(),
        senders=senders or {},
        live=RedisLivePublisher(redis) if redis is not None else None,
    )


class RecordingQueue:
    """A delivery queue keeping the send messages dispatch enqueues; a dispatch part fails."""

    def __init__(self) -> None:
        self.sent: list[Any] = []

    async def enqueue_send(self, message: Any) -> None:
        self.sent.append(message)

    async def enqueue_dispatch(self, envelope: Envelope) -> None:
        raise AssertionError("no dispatch expected")


def envelope(
    user_id: str,
    channel: Channel,
    *,
    type: str = "movie_added",
    payload: dict[str, Any] | None = None,
    template_slug: str = "movie_added",
) -> Envelope:
    """An event for one user on one channel as the API hands it to the worker; by default a
    new film, Metropolis."""
    return Envelope.from_wire(
        {
            "id": str(uuid.uuid4()),
            "type": type,
            "user_ids": [user_id],
            "channels": [channel.value],
            "payload": {"movie": {"title": "Metropolis", "url": "https://m/1"}}
            if payload is None
            else payload,
            "template_slug": template_slug,
            "locale": None,
            "critical": False,
        }
    )


async def dispatch_and_send(ctx: DeliveryContext, user_id: str, channel: Channel) -> str:
    """Dispatch a new film to ``user_id`` on ``channel`` and send it at once, as the worker's
    two units of work do; the delivery's id."""
    event = envelope(user_id, channel)
    await units.dispatch(ctx, event)
    ident = delivery_id(event.id, user_id, channel)
    await units.send(
        ctx, envelope=event, channel=channel, delivery_ids=[ident], attempt=1, resume=False
    )
    return ident


REGISTER_EVENT_TYPE = """mutation($input: RegisterEventTypeInput!) {
  registerEventType(input: $input) { __typename ... on Error { code message field } } }"""


async def create_template(
    call: Callable[..., Awaitable[Any]],
    token: str,
    slug: str,
    content: list[dict[str, Any]],
    *,
    name: str | None = None,
) -> str:
    """Create the template ``slug`` with ``content`` through the API (``call(query,
    variables, token=...)``); it must succeed. Its slug."""
    template = template_input(slug, name=name or slug, content=content)
    body = await call(CREATE_TEMPLATE, {"input": template}, token=token)
    assert body["data"]["createTemplate"]["__typename"] == "Template", body
    return slug


async def template_and_event_type(
    call: Callable[..., Awaitable[Any]],
    token: str,
    *,
    slug: str,
    content: list[dict[str, Any]],
    name: str,
    channels: Sequence[str] = ("IN_APP",),
) -> None:
    """Create the template ``slug`` with ``content`` and register the event type ``name``
    sending it over ``channels``, through the API (``call(query, variables, token=...)``)."""
    await create_template(call, token, slug, content)
    body = await call(
        REGISTER_EVENT_TYPE,
        {"input": {"name": name, "templateSlug": slug, "channels": list(channels)}},
        token=token,
    )
    assert body["data"]["registerEventType"]["__typename"] == "EventType", body
