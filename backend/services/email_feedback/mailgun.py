"""Mailgun webhooks: ``{"signature": {"timestamp", "token", "signature"}, "event-data": {...}}``.

The signature is the hex HMAC-SHA256 of timestamp + token with the HTTP webhook signing key.
A timestamp outside ``HERALD_EMAIL_FEEDBACK_MAX_AGE_SECONDS`` is refused, and a token is
taken once (remembered in Redis for that long): a captured request cannot be replayed.

Events used: ``failed`` (``severity`` permanent: hard bounce; temporary: soft) and
``complained``. Herald's delivery id comes back in ``user-variables.herald_delivery_id`` (set
through the ``X-Mailgun-Variables`` header on outgoing mail), or in the echoed Message-ID.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from backend.errors import UnauthenticatedError, UnavailableError, ValidationError
from backend.services.email_feedback.recording import (
    DELIVERY_ID_KEY,
    Feedback,
    FeedbackKind,
    clean_delivery_id,
    delivery_id_from_message_id,
    load_json,
)

PROVIDER = "mailgun"
SEEN_TOKENS_KEY = "herald:email-feedback:mailgun-token:"


def load(body: bytes) -> dict[str, Any]:
    payload: dict[str, Any] = load_json(body, "a Mailgun webhook", dict)
    return payload


async def verify(
    payload: dict[str, Any],
    *,
    signing_key: str | None,
    redis: Redis,
    max_age_seconds: float,
    now: float | None = None,
) -> None:
    """Raise UnauthenticatedError unless Mailgun signed ``payload`` recently and its token
    was never seen before."""
    if not signing_key:
        raise UnauthenticatedError("Mailgun webhooks are not configured on this server")
    signed = payload.get("signature")
    if not isinstance(signed, dict):
        raise UnauthenticatedError("The Mailgun webhook has no signature")
    timestamp, token, signature = (
        str(signed.get(k) or "") for k in ("timestamp", "token", "signature")
    )
    if not (timestamp and token and signature):
        raise UnauthenticatedError("The Mailgun signature needs timestamp, token and signature")
    expected = hmac.new(
        signing_key.encode(), (timestamp + token).encode(), hashlib.sha256
    ).hexdigest()
    if not hmac.compare_digest(expected, signature.lower()):
        raise UnauthenticatedError("The Mailgun signature does not match the request")
    try:
        sent_at = float(timestamp)
    except ValueError as exc:
        raise UnauthenticatedError("The Mailgun timestamp is not a number") from exc
    if abs((now if now is not None else time.time()) - sent_at) > max_age_seconds:
        raise UnauthenticatedError("The Mailgun signature is too old (or from the future)")
    try:
        fresh = await redis.set(
            SEEN_TOKENS_KEY + token, b"1", nx=True, ex=max(1, int(max_age_seconds * 2))
        )
    except (RedisError, OSError) as exc:
        raise UnavailableError(f"cannot check the Mailgun token: {exc}") from exc
    if not fresh:
        raise UnauthenticatedError("The Mailgun token was already used (a replayed request)")


def parse(payload: dict[str, Any]) -> list[Feedback]:
    """The bounce or complaint in a (verified) Mailgun webhook; other events give nothing."""
    event = payload.get("event-data")
    if not isinstance(event, dict):
        raise ValidationError("The Mailgun webhook has no event-data")
    name = event.get("event")
    if name == "failed":
        severity = event.get("severity")
        kind = FeedbackKind.HARD_BOUNCE if severity == "permanent" else FeedbackKind.SOFT_BOUNCE
    elif name == "complained":
        kind = FeedbackKind.COMPLAINT
    else:
        return []
    address = event.get("recipient")
    if not isinstance(address, str) or not address:
        raise ValidationError(f"The Mailgun {name} event has no recipient")
    variables = event.get("user-variables")
    delivery_id = (
        clean_delivery_id(variables.get(DELIVERY_ID_KEY)) if isinstance(variables, dict) else None
    )
    message = event.get("message")
    headers = message.get("headers") if isinstance(message, dict) else None
    if delivery_id is None and isinstance(headers, dict):
        delivery_id = delivery_id_from_message_id(headers.get("message-id"))
    status = event.get("delivery-status")
    details: list[str] = [f"{name}"]
    if name == "failed":
        details.append(str(severity))
        if event.get("reason"):
            details.append(str(event["reason"]))
    if isinstance(status, dict):
        details.extend(str(status[k]) for k in ("code", "description", "message") if status.get(k))
    return [
        Feedback(
            kind=kind,
            address=address,
            provider=PROVIDER,
            reason=" ".join(details),
            delivery_id=delivery_id,
        )
    ]
