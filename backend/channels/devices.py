"""A push to each of a user's devices (a browser's Web Push subscription, a mobile app's
token): what each device's service answered, and the send's result from them all."""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from backend.channels.base import ChannelError, HttpProviderSender, SendResult


class DeviceStatus(enum.Enum):
    DELIVERED = "delivered"
    EXPIRED = "expired"  # the service says the device is gone: the caller disables it
    TRANSIENT = "transient"
    PERMANENT = "permanent"


@dataclass(frozen=True, slots=True)
class DeviceOutcome:
    address: str  # the subscription's endpoint, or the device token
    status: DeviceStatus
    detail: str = ""
    message_id: str | None = None
    retry_after: float | None = None


class DevicesError(ChannelError):
    """No device got the message; ``expired_endpoints`` are the devices found gone on the way
    (``expired_reasons`` what the service answered for each), for the caller to disable."""

    def __init__(
        self,
        message: str,
        *,
        provider: str,
        expired_endpoints: tuple[str, ...] = (),
        expired_reasons: dict[str, str] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, provider=provider)
        self.expired_endpoints = expired_endpoints
        self.expired_reasons = expired_reasons or {}
        self.retry_after = retry_after


def summarise(
    outcomes: Sequence[DeviceOutcome],
    *,
    provider: str,
    nobody: str,
    label: Callable[[str], str],
    transient: type[DevicesError],
    permanent: type[DevicesError],
) -> SendResult:
    """Sent when one device got it (its message id, when it is the only one); otherwise
    ``transient`` if any failure is worth retrying (waiting the longest ``retry_after``), else
    ``permanent``, saying "<nobody> got the push" and each device's failure by its ``label``."""
    gone = {o.address: o.detail for o in outcomes if o.status is DeviceStatus.EXPIRED}
    delivered = [o for o in outcomes if o.status is DeviceStatus.DELIVERED]
    if delivered:
        ids = [o.message_id for o in delivered if o.message_id]
        return SendResult(
            provider=provider,
            provider_message_id=ids[0] if len(ids) == 1 else None,
            expired_endpoints=tuple(gone),
            expired_reasons=gone,
        )
    failures = "; ".join(f"{label(o.address)}: {o.detail}" for o in outcomes)
    retryable = [o for o in outcomes if o.status is DeviceStatus.TRANSIENT]
    waits = [o.retry_after for o in retryable if o.retry_after is not None]
    raise (transient if retryable else permanent)(
        f"{nobody} got the push ({failures})",
        provider=provider,
        expired_endpoints=tuple(gone),
        expired_reasons=gone,
        retry_after=max(waits) if waits else None,
    )


class DevicePushSender(HttpProviderSender):
    """An HTTP provider sender that pushes to each device with a request of its own."""

    async def _post_to_device(
        self, client: httpx.AsyncClient, address: str, url: str, *, service: str, **request: Any
    ) -> httpx.Response | DeviceOutcome:
        """``service``'s answer to the push for the device at ``address``, or its transient
        outcome when the request gets no answer in time or cannot reach ``service``."""
        try:
            return await client.post(url, **request)
        except httpx.TimeoutException:
            return DeviceOutcome(
                address, DeviceStatus.TRANSIENT, f"no answer within {self._timeout} s"
            )
        except httpx.HTTPError as exc:
            return DeviceOutcome(
                address, DeviceStatus.TRANSIENT, f"cannot reach {service}: {type(exc).__name__}"
            )
