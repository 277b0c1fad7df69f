"""Web Push: payloads encrypted per RFC 8291 (aes128gcm), senders identified per RFC 8292 (VAPID).

Each of the user's browser subscriptions gets its own encrypted copy. A push service answering
404 or 410 says the subscription is gone for good; those endpoints are reported back so the
caller can delete them.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import os
import time
from urllib.parse import urlsplit

import http_ece
import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from backend.channels import Channel
from backend.channels.base import (
    OutgoingMessage,
    PermanentChannelError,
    PushSubscription,
    SendResult,
    TransientChannelError,
)
from backend.channels.devices import (
    DeviceOutcome,
    DevicePushSender,
    DevicesError,
    DeviceStatus,
    summarise,
)
from backend.config import Settings

logger = logging.getLogger(__name__)

PROVIDER = "webpush"
# A notification still undelivered after a day (device off) is stale; let the service drop it.
TTL_SECONDS = 24 * 3600
URGENCY = "normal"
# RFC 8291 §4: a push message is one record of at most 4096 octets; the aes128gcm header with a
# 65-octet key id takes 86 of them, the AEAD tag 16 and the padding delimiter 1.
MAX_PAYLOAD_BYTES = 4096 - 86 - 16 - 1
# RFC 8292 §2 caps a VAPID token's lifetime at 24 h; a 12 h token reused for up to 11 h keeps
# every request well inside that while signing once per push service, not once per message.
_JWT_LIFETIME_SECONDS = 12 * 3600
_JWT_RENEW_BEFORE_SECONDS = 3600
# An origin leaves the scheme's default port out (RFC 6454 §6.1).
_DEFAULT_PORTS = {"https": ":443", "http": ":80"}


def generate_vapid_keys() -> tuple[str, str]:
    """A new VAPID key pair as ``(private, public)``, both base64url without padding.

    The private key is the raw 32-byte scalar (what ``HERALD_VAPID_PRIVATE_KEY`` takes); the
    public key is the uncompressed P-256 point that browsers take as ``applicationServerKey``.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    private = key.private_numbers().private_value.to_bytes(32, "big")
    return _b64url(private), _b64url(_public_point(key.public_key()))


def load_vapid_private_key(value: str) -> ec.EllipticCurvePrivateKey:
    """Read a VAPID private key given as PEM or as a base64url raw 32-byte scalar."""
    text = value.strip()
    if text.startswith("-----BEGIN"):
        key = serialization.load_pem_private_key(text.encode(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(
            key.curve, ec.SECP256R1
        ):
            raise ValueError("the VAPID private key must be a P-256 (prime256v1) EC key")
        return key
    raw = _b64url_decode(text)
    if len(raw) != 32:
        raise ValueError(f"a raw VAPID private key is 32 bytes, got {len(raw)}")
    return ec.derive_private_key(int.from_bytes(raw, "big"), ec.SECP256R1())


class PushTransientError(DevicesError, TransientChannelError):
    """No subscription got the message, at least one failure is worth retrying."""


class PushPermanentError(DevicesError, PermanentChannelError):
    """No subscription got the message and retrying will not change that."""


class WebPushSender(DevicePushSender):
    """Sends a notification to every Web Push subscription of the user."""

    channel: Channel = Channel.PUSH

    def __init__(self, settings: Settings) -> None:
        secret = settings.vapid_private_key.get_secret_value() if settings.vapid_private_key else ""
        # A malformed key is an operator error: refuse at start rather than fail every send.
        self._key = load_vapid_private_key(secret) if secret else None
        self._public_key = _b64url(_public_point(self._key.public_key())) if self._key else None
        if (
            self._public_key
            and settings.vapid_public_key
            and _b64url_decode(settings.vapid_public_key) != _b64url_decode(self._public_key)
        ):
            raise ValueError("HERALD_VAPID_PUBLIC_KEY does not belong to the VAPID private key")
        self._subject = settings.vapid_subject
        self._timeout = settings.push_timeout_seconds
        self._tokens: dict[str, tuple[str, float]] = {}

    @property
    def public_key(self) -> str | None:
        """The VAPID public key (base64url): browsers subscribe with it as
        ``applicationServerKey``."""
        return self._public_key

    async def send(self, message: OutgoingMessage) -> SendResult:
        """Push ``message`` to each of its subscriptions, concurrently."""
        client = self._started_client()
        if self._key is None or self._public_key is None:
            raise PermanentChannelError(
                "Web Push is not configured: set HERALD_VAPID_PRIVATE_KEY", provider=PROVIDER
            )
        if not message.push_subscriptions:
            raise PermanentChannelError("the user has no push subscription", provider=PROVIDER)
        payload = json.dumps(
            {
                "title": message.title,
                "body": message.body,
                "data": message.data,
                "delivery_id": message.delivery_id,
                "event_type": message.event_type,
            },
            separators=(",", ":"),
            ensure_ascii=False,
        ).encode()
        if len(payload) > MAX_PAYLOAD_BYTES:
            raise PermanentChannelError(
                f"the push payload is {len(payload)} bytes; Web Push carries at most "
                f"{MAX_PAYLOAD_BYTES}",
                provider=PROVIDER,
            )
        outcomes = await asyncio.gather(
            *(self._push(client, self._key, sub, payload) for sub in message.push_subscriptions)
        )
        return _summarise(outcomes)

    async def _push(
        self,
        client: httpx.AsyncClient,
        key: ec.EllipticCurvePrivateKey,
        subscription: PushSubscription,
        payload: bytes,
    ) -> DeviceOutcome:
        endpoint = subscription.endpoint
        try:
            audience = _origin(endpoint)
            body = encrypt_payload(payload, subscription)
        except ValueError as exc:
            return DeviceOutcome(endpoint, DeviceStatus.PERMANENT, f"unusable subscription: {exc}")
        headers = {
            "TTL": str(TTL_SECONDS),
            "Urgency": URGENCY,
            "Content-Encoding": "aes128gcm",
            "Content-Type": "application/octet-stream",
            "Authorization": f"vapid t={self._vapid_token(key, audience)}, k={self._public_key}",
        }
        response = await self._post_to_device(
            client, endpoint, endpoint, service="the push service", content=body, headers=headers
        )
        if isinstance(response, DeviceOutcome):
            return response
        status = response.status_code
        if response.is_success:
            return DeviceOutcome(endpoint, DeviceStatus.DELIVERED)
        detail = f"the push service answered {status}: {response.text[:200]}"
        if status in (404, 410):
            return DeviceOutcome(endpoint, DeviceStatus.EXPIRED, detail)
        if status == 429 or status >= 500:
            return DeviceOutcome(endpoint, DeviceStatus.TRANSIENT, detail)
        return DeviceOutcome(endpoint, DeviceStatus.PERMANENT, detail)

    def _vapid_token(self, key: ec.EllipticCurvePrivateKey, audience: str) -> str:
        now = time.time()
        cached = self._tokens.get(audience)
        if cached is not None and cached[1] - now > _JWT_RENEW_BEFORE_SECONDS:
            return cached[0]
        expires = int(now) + _JWT_LIFETIME_SECONDS
        claims = {"aud": audience, "exp": expires, "sub": self._subject}
        token = jwt.encode(claims, key, algorithm="ES256")
        self._tokens[audience] = (token, expires)
        return token


def encrypt_payload(payload: bytes, subscription: PushSubscription) -> bytes:
    """``payload`` encrypted for one browser (RFC 8291), with a fresh key pair and salt."""
    receiver_key = _b64url_decode(subscription.p256dh)
    auth_secret = _b64url_decode(subscription.auth)
    if len(receiver_key) != 65 or receiver_key[0] != 0x04:
        raise ValueError("p256dh is not an uncompressed P-256 point")
    if len(auth_secret) != 16:
        raise ValueError("auth is not a 16-byte secret")
    # RFC 8291 §3.1: the sender's key pair must be new for every message.
    ephemeral = ec.generate_private_key(ec.SECP256R1())
    try:
        encrypted: bytes = http_ece.encrypt(
            payload,
            salt=os.urandom(16),
            private_key=ephemeral,
            dh=receiver_key,
            auth_secret=auth_secret,
            version="aes128gcm",
        )
    except http_ece.ECEException as exc:
        raise ValueError(str(exc)) from exc
    return encrypted


def _summarise(outcomes: list[DeviceOutcome]) -> SendResult:
    for outcome in outcomes:
        if outcome.status in (DeviceStatus.TRANSIENT, DeviceStatus.PERMANENT):
            logger.info("push to %s failed: %s", outcome.address, outcome.detail)
    return summarise(
        outcomes,
        provider=PROVIDER,
        nobody="no subscription",
        label=lambda endpoint: endpoint,
        transient=PushTransientError,
        permanent=PushPermanentError,
    )


def _origin(endpoint: str) -> str:
    """The endpoint's origin, the VAPID token's audience (RFC 8292 §2)."""
    parts = urlsplit(endpoint)
    if parts.scheme not in _DEFAULT_PORTS:
        raise ValueError(f"not an http(s) URL: {endpoint!r}")
    host = parts.netloc.rpartition("@")[2].lower().removesuffix(_DEFAULT_PORTS[parts.scheme])
    if not host:
        raise ValueError(f"no host in {endpoint!r}")
    return f"{parts.scheme}://{host}"


def _public_point(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64url_decode(text: str) -> bytes:
    # Subscriptions arrive unpadded (PushSubscription.toJSON()); some libraries use + and /.
    cleaned = text.strip().replace("+", "-").replace("/", "_").rstrip("=")
    try:
        return base64.urlsafe_b64decode(cleaned + "=" * (-len(cleaned) % 4))
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"not base64url: {exc}") from exc
