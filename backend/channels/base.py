"""The one protocol every delivery channel implements, and what flows through it."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import httpx

from backend.channels import Channel
from backend.errors import HeraldError


@dataclass(frozen=True, slots=True)
class Recipient:
    """Who a message goes to: the auth service's profile of a user (the users service
    fetches it; templates see it as ``user``)."""

    id: str
    email: str | None = None
    first_name: str = ""
    last_name: str = ""
    login: str = ""
    phone: str | None = None
    locale: str | None = None
    timezone: str | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Recipient:
        return cls(
            id=str(data["id"]),
            email=data.get("email"),
            first_name=data.get("first_name") or "",
            last_name=data.get("last_name") or "",
            login=data.get("login") or "",
            phone=data.get("phone"),
            locale=data.get("locale"),
            timezone=data.get("timezone"),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "email": self.email,
            "first_name": self.first_name,
            "last_name": self.last_name,
            "login": self.login,
            "phone": self.phone,
            "locale": self.locale,
            "timezone": self.timezone,
        }

    def to_context(self) -> dict[str, Any]:
        """The ``user`` variable templates see."""
        return self.to_json()


@dataclass(frozen=True, slots=True)
class UnsubscribeLinks:
    """What an email carries so its recipient can opt out (the unsubscribe service
    signs them): the page link (footer), the one-click URL and optional mailto
    (``List-Unsubscribe``), and the body a one-click POST sends (``List-Unsubscribe-Post``)."""

    page_url: str
    one_click_url: str
    mailto: str | None
    one_click_body: str

    def list_unsubscribe(self) -> str:
        """The ``List-Unsubscribe`` header value (RFC 2369): https first, then mailto."""
        targets = [f"<{self.one_click_url}>"]
        if self.mailto:
            targets.append(f"<{self.mailto}>")
        return ", ".join(targets)


@dataclass(frozen=True, slots=True)
class PushSubscription:
    """A browser's Web Push subscription (from the Push API's ``PushSubscription.toJSON()``)."""

    endpoint: str
    p256dh: str  # base64url, the client's ECDH public key
    auth: str  # base64url, the client's auth secret


@dataclass(frozen=True, slots=True)
class MobileDevice:
    """A mobile app install's push token: ``platform`` ios (APNs) or android (FCM)."""

    token: str
    platform: str


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    """One rendered message for one recipient on one channel."""

    delivery_id: str
    event_id: str
    event_type: str
    channel: Channel
    user: Recipient
    subject: str | None = None
    title: str | None = None
    body: str | None = None
    html: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    push_subscriptions: tuple[PushSubscription, ...] = ()
    # Email only, and never on critical messages (password resets): nobody may opt out.
    unsubscribe: UnsubscribeLinks | None = None
    # Chat channels: where the message goes (a Slack channel or user id, a Telegram chat id),
    # from the event's payload (``chat.<channel>``) or the recipient's chat address.
    chat_id: str | None = None
    # Slack: the Block Kit blocks, rendered from the template.
    blocks: list[dict[str, Any]] | None = None
    # Webhook channel: the recipient's own webhook URL (its WEBHOOK address), if it has one.
    webhook_url: str | None = None
    # Mobile push: the user's devices, and the template's data (strings), badge and sound.
    devices: tuple[MobileDevice, ...] = ()
    push_data: dict[str, str] = field(default_factory=dict)
    badge: int | None = None
    sound: str | None = None
    # In-app: the rendered actions ([{label, url} | {label, name}]).
    actions: tuple[dict[str, str], ...] = ()
    # The event's tenant, if any: in-app items carry it (a subscriber bound to a tenant sees
    # only its tenant's).
    tenant_id: str | None = None


@dataclass(frozen=True, slots=True)
class ProviderTry:
    """One provider that failed a message before another provider was tried (failover)."""

    provider: str
    error: str
    at: datetime


@dataclass(frozen=True, slots=True)
class SendResult:
    provider: str
    provider_message_id: str | None = None
    # Push subscriptions the push service reported gone (404/410): the caller disables them,
    # with what the push service answered for each (``expired_reasons``, by endpoint).
    expired_endpoints: tuple[str, ...] = ()
    expired_reasons: dict[str, str] = field(default_factory=dict)
    # Providers that failed this message before ``provider`` took it, in order.
    failed_tries: tuple[ProviderTry, ...] = ()
    # The provider confirmed there and then that the message reached the recipient (it
    # answered with the posted message: Slack's ts, Telegram's message, Discord's message),
    # not only that it accepted it: the delivery becomes ``delivered`` rather than ``sent``.
    delivered: bool = False


class ChannelError(HeraldError):
    """A send failed. ``provider`` names who refused; ``tries`` are the providers that failed
    the message before that one (failover), in order. ``expired_reasons``: addresses a
    provider reported gone on the way (a push token, a chat that blocked the bot), by key,
    with what it answered; the caller disables them (``expired_endpoints`` their keys)."""

    code = "CHANNEL"

    def __init__(
        self,
        message: str,
        *,
        provider: str,
        tries: tuple[ProviderTry, ...] = (),
        expired_reasons: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.provider = provider
        self.tries = tries
        self.expired_reasons: dict[str, str] = dict(expired_reasons or {})
        self.expired_endpoints: tuple[str, ...] = tuple(self.expired_reasons)


class TransientChannelError(ChannelError):
    """Worth retrying: timeouts, connection refused, 5xx, 429, SMTP 4xx. ``retry_after``:
    seconds the provider asked to wait (a 429's ``Retry-After``); the retry waits at least
    that long."""

    def __init__(
        self,
        message: str,
        *,
        provider: str,
        tries: tuple[ProviderTry, ...] = (),
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, provider=provider, tries=tries)
        self.retry_after = retry_after


class PermanentChannelError(ChannelError):
    """Retrying will not help: bad address, provider 4xx, SMTP 5xx, no push subscription."""


class ChannelSender(Protocol):
    """A channel's sender. One instance per worker process, created with the process's loop."""

    channel: Channel

    async def start(self) -> None:
        """Open pools and connections."""

    async def close(self) -> None:
        """Release pools and connections."""

    async def send(self, message: OutgoingMessage) -> SendResult:
        """Send one message, or raise :class:`TransientChannelError` /
        :class:`PermanentChannelError`."""
        ...


class HttpProviderSender:
    """The HTTP client of a sender whose provider is reached over HTTP: one client, and so
    one connection pool, per worker process, opened by ``start()`` and closed by ``close()``.
    A subclass sets ``_timeout`` (seconds) and may add headers every request carries."""

    _timeout: float
    _client: httpx.AsyncClient | None = None

    def _headers(self) -> dict[str, str]:
        return {}

    async def start(self) -> None:
        """Open the HTTP client shared by every send."""
        if self._client is None:
            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(self._timeout), headers=self._headers()
            )

    async def close(self) -> None:
        """Close the HTTP client."""
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()

    def _started_client(self) -> httpx.AsyncClient:
        if self._client is None:
            raise RuntimeError(f"{type(self).__name__}.start() was not called")
        return self._client

    @contextmanager
    def _unanswered_is_transient(self, service: str, *, provider: str) -> Iterator[None]:
        """A request inside that gets no answer in time, or cannot reach ``service`` at all,
        raises :class:`TransientChannelError` (worth retrying) saying so."""
        try:
            yield
        except httpx.TimeoutException as exc:
            raise TransientChannelError(
                f"{service} did not answer within {self._timeout} s", provider=provider
            ) from exc
        except httpx.HTTPError as exc:
            raise TransientChannelError(
                f"cannot reach {service}: {type(exc).__name__}", provider=provider
            ) from exc
