"""The addresses Herald owns for a recipient (Web Push subscriptions, mobile device tokens,
chat ids, webhook URLs): checked, registered, disabled when a provider reports them gone, and
shown to admins without their secrets."""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy.ext.asyncio import AsyncSession

from backend.auth import Principal
from backend.db.models import RecipientAddress
from backend.db.repositories.recipients import RecipientAddressRepository, RecipientRepository
from backend.errors import NotFoundError, ValidationError

_B64URL = re.compile(r"^[A-Za-z0-9_-]+={0,2}$")


class AddressKind(Enum):
    WEB_PUSH = "WEB_PUSH"
    MOBILE_PUSH = "MOBILE_PUSH"
    CHAT = "CHAT"
    WEBHOOK = "WEBHOOK"


MOBILE_PLATFORMS = ("ios", "android")
CHAT_PROVIDERS = ("slack", "telegram", "teams", "discord", "mattermost")


@dataclass(frozen=True, slots=True)
class AddressInput:
    """An address to register: its kind, the provider or platform, and what sending needs."""

    kind: AddressKind
    key: str
    value: dict[str, Any]
    provider: str | None = None


def web_push_address(
    *, endpoint: str, p256dh: str, auth: str, allow_http: bool, field_prefix: str = ""
) -> AddressInput:
    """A browser's Web Push subscription, checked. ``allow_http`` admits plain-http endpoints,
    for local push-service stand-ins outside production; real push services are https."""
    if not endpoint.startswith("https://") and not (allow_http and endpoint.startswith("http://")):
        raise ValidationError("A push endpoint is an https URL", field=f"{field_prefix}endpoint")
    if len(endpoint) > 2000:
        raise ValidationError("The endpoint is too long", field=f"{field_prefix}endpoint")
    for name, value in (("p256dh", p256dh), ("auth", auth)):
        if not _B64URL.match(value) or len(value) > 200:
            raise ValidationError(
                f"keys.{name} must be base64url", field=f"{field_prefix}keys.{name}"
            )
    return AddressInput(
        AddressKind.WEB_PUSH, endpoint, {"endpoint": endpoint, "p256dh": p256dh, "auth": auth}
    )


def mobile_push_address(*, platform: str, token: str) -> AddressInput:
    token = _checked_key(
        token, platform, MOBILE_PLATFORMS, what="A device token", limit=4096, at="mobilePush"
    )
    return AddressInput(AddressKind.MOBILE_PUSH, token, {"token": token}, provider=platform)


def chat_address(*, provider: str, chat_id: str) -> AddressInput:
    chat_id = _checked_key(
        chat_id, provider, CHAT_PROVIDERS, what="A chat id", limit=200, at="chat"
    )
    return AddressInput(AddressKind.CHAT, chat_id, {"chat_id": chat_id}, provider=provider)


def webhook_address(*, url: str, allow_http: bool) -> AddressInput:
    """A URL the webhook channel POSTs the user's messages to. Whether its host may be reached
    (no private or loopback address in production) is checked at every send."""
    url = url.strip()
    parts = urlsplit(url)
    schemes = ("https", "http") if allow_http else ("https",)
    if parts.scheme not in schemes or not parts.hostname or len(url) > 2000:
        raise ValidationError(
            f"A webhook URL is an absolute {' or '.join(schemes)} URL", field="webhook.url"
        )
    return AddressInput(AddressKind.WEBHOOK, url, {"url": url})


def _checked_key(
    key: str, provider: str, providers: Sequence[str], *, what: str, limit: int, at: str
) -> str:
    """``key`` stripped, once it and its provider (or platform) are acceptable."""
    if provider not in providers:
        name = "platform" if at == "mobilePush" else "provider"
        raise ValidationError(f"{name} is one of {', '.join(providers)}", field=f"{at}.{name}")
    key = key.strip()
    if not key or len(key) > limit:
        field = "token" if at == "mobilePush" else "chatId"
        raise ValidationError(f"{what} is 1 to {limit} characters", field=f"{at}.{field}")
    return key


async def register_address(
    session: AsyncSession, *, actor: Principal, address: AddressInput
) -> RecipientAddress:
    """Register an address for the caller (the token's user); registering one that another
    user had moves it to the caller."""
    return await register_for_user(RecipientAddressRepository(session), actor.user_id, address)


async def register_for_user(
    repository: RecipientAddressRepository, user_id: str, address: AddressInput
) -> RecipientAddress:
    """Register ``address`` for ``user_id``, whose recipient row is made if it has none."""
    await RecipientRepository(repository.session).ensure(user_id)
    return await repository.register(
        user_id=user_id,
        kind=address.kind.value,
        provider=address.provider,
        key=address.key,
        value=address.value,
    )


async def remove_address(session: AsyncSession, *, actor: Principal, address_id: str) -> None:
    """Remove one of the caller's addresses."""
    try:
        ident = uuid.UUID(address_id)
    except ValueError as exc:
        raise ValidationError("Not an address id", field="id") from exc
    if not await RecipientAddressRepository(session).remove(ident, user_id=actor.user_id):
        raise NotFoundError("You have no such address", field="id")


async def disable_web_push(
    session: AsyncSession, *, reasons: Mapping[str, str], at: datetime | None = None
) -> int:
    """Disable the Web Push addresses a push service reported gone, each with its reason;
    later sends skip them."""
    return await disable_addresses(session, kind=AddressKind.WEB_PUSH, reasons=reasons, at=at)


async def disable_addresses(
    session: AsyncSession,
    *,
    kind: AddressKind,
    reasons: Mapping[str, str],
    at: datetime | None = None,
    provider: str | None = None,
) -> int:
    """Disable the addresses of ``kind`` (by key) a provider reported gone, each with its
    reason; later sends skip them. ``provider``: only the addresses of that service (a chat
    id means something only to its own chat service)."""
    at = at or datetime.now(UTC)
    repository = RecipientAddressRepository(session)
    disabled = 0
    for reason in set(reasons.values()):
        keys = [key for key, why in reasons.items() if why == reason]
        disabled += await repository.disable(
            kind=kind.value, keys=keys, reason=reason, at=at, provider=provider
        )
    return disabled


async def mark_web_push_used(
    session: AsyncSession, *, endpoints: Sequence[str], at: datetime | None = None
) -> None:
    """Note when the push service last took a message for these browsers."""
    await RecipientAddressRepository(session).mark_used(
        kind=AddressKind.WEB_PUSH.value, keys=sorted(set(endpoints)), at=at or datetime.now(UTC)
    )


def display_value(address: RecipientAddress) -> str:
    """What an admin may see of an address: never a push endpoint's secret path or a whole
    device token."""
    if address.kind == AddressKind.WEB_PUSH.value:
        parts = urlsplit(address.key)
        return f"{parts.scheme}://{parts.netloc}/…{address.key[-6:]}"
    if address.kind == AddressKind.MOBILE_PUSH.value:
        return f"…{address.key[-6:]}"
    if address.kind == AddressKind.WEBHOOK.value:
        parts = urlsplit(address.key)
        return f"{parts.scheme}://{parts.hostname}/…{address.key[-6:]}"
    return address.key
