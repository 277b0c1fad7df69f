"""The SendGrid Event Webhook: a JSON array of events, signed with ECDSA (P-256, SHA-256) over
the ``X-Twilio-Email-Event-Webhook-Timestamp`` header followed by the raw body; the base64 DER
signature is in ``X-Twilio-Email-Event-Webhook-Signature``, the verification key is the one
SendGrid shows when signing is turned on.

Events used: ``bounce`` (``type`` "bounce": hard; "blocked": soft), ``dropped`` (SendGrid
would not send: reason "Bounced Address" or "Invalid" is hard, "Spam Reporting Address" a
complaint, any other soft) and ``spamreport`` (complaint). Herald's delivery id comes back
as the custom argument ``herald_delivery_id`` (set through the ``X-SMTPAPI`` header on
outgoing mail).
"""

from __future__ import annotations

import base64
import binascii
import time
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from backend.errors import UnauthenticatedError
from backend.services.email_feedback.recording import (
    DELIVERY_ID_KEY,
    Feedback,
    FeedbackKind,
    clean_delivery_id,
    load_json,
)

PROVIDER = "sendgrid"
SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"
# ``dropped`` reasons (SendGrid's own suppression lists) that say the address is bad, or that
# its owner reported spam; other drops (unsubscribed, invalid SMTPAPI header...) are soft.
_HARD_DROPS = frozenset({"bounced address", "invalid"})
_COMPLAINT_DROPS = frozenset({"spam reporting address"})


def load_public_key(value: str) -> ec.EllipticCurvePublicKey:
    """The verification key as SendGrid shows it (base64 DER), or PEM."""
    text = value.strip()
    try:
        if text.startswith("-----BEGIN"):
            key = serialization.load_pem_public_key(text.encode())
        else:
            key = serialization.load_der_public_key(base64.b64decode(text, validate=True))
    except (ValueError, binascii.Error) as exc:
        raise ValueError("HERALD_SENDGRID_WEBHOOK_PUBLIC_KEY is not a public key") from exc
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise ValueError("HERALD_SENDGRID_WEBHOOK_PUBLIC_KEY is not an ECDSA P-256 key")
    return key


def verify(
    *,
    public_key: str | None,
    signature: str | None,
    timestamp: str | None,
    body: bytes,
    max_age_seconds: float,
    now: float | None = None,
) -> None:
    """Raise UnauthenticatedError unless SendGrid signed ``body`` recently."""
    if not public_key:
        raise UnauthenticatedError("SendGrid events are not configured on this server")
    if not signature or not timestamp:
        raise UnauthenticatedError(f"The request has no {SIGNATURE_HEADER} or {TIMESTAMP_HEADER}")
    try:
        sent_at = float(timestamp)
    except ValueError as exc:
        raise UnauthenticatedError(f"{TIMESTAMP_HEADER} is not a number") from exc
    if abs((now if now is not None else time.time()) - sent_at) > max_age_seconds:
        raise UnauthenticatedError("The SendGrid signature is too old (or from the future)")
    try:
        raw = base64.b64decode(signature, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise UnauthenticatedError(f"{SIGNATURE_HEADER} is not base64") from exc
    try:
        load_public_key(public_key).verify(
            raw, timestamp.encode() + body, ec.ECDSA(hashes.SHA256())
        )
    except InvalidSignature as exc:
        raise UnauthenticatedError("The SendGrid signature does not match the request") from exc


def _reason(event: dict[str, Any]) -> str:
    return " ".join(str(event[k]) for k in ("type", "status", "reason") if event.get(k))


def parse(body: bytes) -> list[Feedback]:
    """Bounces, drops and spam reports of a (verified) SendGrid event batch."""
    events = load_json(body, "a SendGrid event batch", list)
    items = []
    for event in events:
        if not isinstance(event, dict) or not event.get("email"):
            continue
        name = event.get("event")
        if name == "bounce":
            kind = (
                FeedbackKind.SOFT_BOUNCE
                if event.get("type") == "blocked"
                else FeedbackKind.HARD_BOUNCE
            )
        elif name == "dropped":
            reason = str(event.get("reason") or "").strip().lower()
            if reason in _HARD_DROPS:
                kind = FeedbackKind.HARD_BOUNCE
            elif reason in _COMPLAINT_DROPS:
                kind = FeedbackKind.COMPLAINT
            else:
                kind = FeedbackKind.SOFT_BOUNCE
        elif name == "spamreport":
            kind = FeedbackKind.COMPLAINT
        else:
            continue
        items.append(
            Feedback(
                kind=kind,
                address=str(event["email"]),
                provider=PROVIDER,
                reason=f"{name} {_reason(event)}".strip(),
                delivery_id=clean_delivery_id(event.get(DELIVERY_ID_KEY)),
            )
        )
    return items
