"""Typed factories for test data and tokens."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.auth import mint_token
from backend.channels import Channel
from backend.config import Settings
from backend.db.history.base import Attempt, DeliveryRecord, DeliveryStatus
from backend.db.history.postgres import PostgresHistoryStore
from backend.db.session import create_sessionmaker
from backend.services.deliveries import DeliveryContext, DeliveryQueue
from backend.services.deliveries.context import UserLookup
from backend.services.live import RedisLivePublisher
from backend.services.users import UserProfile


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
    redis: Redis,
    *,
    queue: DeliveryQueue,
    users: UserLookup | None = None,
) -> DeliveryContext:
    """A worker's delivery context on the test database, publishing live messages to the test
    Redis; ``users`` defaults to :class:`NoDirectory`."""
    return DeliveryContext(
        settings=settings,
        sessionmaker=create_sessionmaker(engine),
        history=PostgresHistoryStore(engine),
        queue=queue,
        users=users or NoDirectory(),
        live=RedisLivePublisher(redis),
    )


REGISTER_EVENT_TYPE = """mutation($input: RegisterEventTypeInput!) {
  registerEventType(input: $input) { __typename ... on Error { code message field } } }"""


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
    body = await call(
        CREATE_TEMPLATE,
        {"input": {"slug": slug, "name": slug, "description": "", "content": content}},
        token=token,
    )
    assert body["data"]["createTemplate"]["__typename"] == "Template", body
    body = await call(
        REGISTER_EVENT_TYPE,
        {"input": {"name": name, "templateSlug": slug, "channels": list(channels)}},
        token=token,
    )
    assert body["data"]["registerEventType"]["__typename"] == "EventType", body
