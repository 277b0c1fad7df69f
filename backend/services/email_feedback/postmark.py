"""Postmark bounce and spam-complaint webhooks.

Postmark does not sign webhooks; it supports HTTP basic auth credentials in the webhook URL
(``https://user:password@herald.example.com/providers/email/postmark/events``), which Herald
requires (``HERALD_POSTMARK_WEBHOOK_USERNAME`` / ``_PASSWORD``).

``RecordType`` ``Bounce``: ``Type`` HardBounce or BadEmailAddress is hard, any other type
(SoftBounce, Transient, DnsError, Blocked...) soft; ``RecordType`` ``SpamComplaint`` is a
complaint. Herald's delivery id comes back in ``Metadata.herald_delivery_id`` (set through the
``X-PM-Metadata-herald_delivery_id`` header on outgoing mail).
"""

from __future__ import annotations

import base64
import binascii
import hmac

from backend.errors import UnauthenticatedError, ValidationError
from backend.services.email_feedback.recording import (
    DELIVERY_ID_KEY,
    Feedback,
    FeedbackKind,
    clean_delivery_id,
    load_json,
)

PROVIDER = "postmark"
HARD_TYPES = frozenset({"HardBounce", "BadEmailAddress"})


def verify(*, authorization: str | None, username: str | None, password: str | None) -> None:
    """Raise UnauthenticatedError unless ``authorization`` is Basic with the configured
    credentials."""
    if not username or not password:
        raise UnauthenticatedError("Postmark webhooks are not configured on this server")
    scheme, _, encoded = (authorization or "").partition(" ")
    if scheme.lower() != "basic" or not encoded:
        raise UnauthenticatedError("Postmark webhooks need HTTP basic auth")
    try:
        given_user, sep, given_password = (
            base64.b64decode(encoded.strip(), validate=True).decode().partition(":")
        )
    except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
        raise UnauthenticatedError("The basic auth credentials are not valid base64") from exc
    same_user = hmac.compare_digest(given_user.encode(), username.encode())
    same_password = hmac.compare_digest(given_password.encode(), password.encode())
    if not (sep and same_user and same_password):
        raise UnauthenticatedError("Wrong Postmark webhook credentials")


def parse(body: bytes) -> list[Feedback]:
    """The bounce or complaint of one Postmark webhook call; other record types give
    nothing."""
    record = load_json(body, "a Postmark webhook", dict)
    kind_name = record.get("RecordType")
    if kind_name not in ("Bounce", "SpamComplaint"):
        return []
    address = record.get("Email")
    if not isinstance(address, str) or not address:
        raise ValidationError(f"The Postmark {kind_name} has no Email")
    bounce_type = str(record.get("Type") or "")
    if kind_name == "SpamComplaint":
        kind = FeedbackKind.COMPLAINT
    elif bounce_type in HARD_TYPES:
        kind = FeedbackKind.HARD_BOUNCE
    else:
        kind = FeedbackKind.SOFT_BOUNCE
    metadata = record.get("Metadata")
    delivery_id = (
        clean_delivery_id(metadata.get(DELIVERY_ID_KEY)) if isinstance(metadata, dict) else None
    )
    reason = " ".join(str(record[k]) for k in ("Type", "Description", "Details") if record.get(k))
    return [
        Feedback(
            kind=kind, address=address, provider=PROVIDER, reason=reason, delivery_id=delivery_id
        )
    ]
