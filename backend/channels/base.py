"""The one protocol every delivery channel implements, and what flows through it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from backend.channels import Channel
from backend.errors import HeraldError
from backend.services.users import UserProfile


@dataclass(frozen=True, slots=True)
class PushSubscription:
    """A browser's Web Push subscription (from the Push API's ``PushSubscription.toJSON()``)."""

    endpoint: str
    p256dh: str  # base64url, the client's ECDH public key
    auth: str  # base64url, the client's auth secret


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    """One rendered message for one recipient on one channel."""

    delivery_id: str
    event_id: str
    event_type: str
    channel: Channel
    user: UserProfile
    subject: str | None = None
    title: str | None = None
    body: str | None = None
    html: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    push_subscriptions: tuple[PushSubscription, ...] = ()
    # Critical messages (password resets) carry no unsubscribe link: nobody may opt out.
    critical: bool = False


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
    # Push subscriptions the push service reported gone (404/410): the caller removes them.
    expired_endpoints: tuple[str, ...] = ()
    # Providers that failed this message before ``provider`` took it, in order.
    failed_tries: tuple[ProviderTry, ...] = ()


class ChannelError(HeraldError):
    """A send failed. ``provider`` names who refused; ``tries`` are the providers that failed
    the message before that one (failover), in order."""

    code = "CHANNEL"

    def __init__(self, message: str, *, provider: str, tries: tuple[ProviderTry, ...] = ()) -> None:
        super().__init__(message)
        self.provider = provider
        self.tries = tries


class TransientChannelError(ChannelError):
    """Worth retrying: timeouts, connection refused, 5xx, 429, SMTP 4xx."""


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
