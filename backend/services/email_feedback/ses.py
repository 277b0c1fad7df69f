"""Amazon SES bounce and complaint notifications, delivered by Amazon SNS.

SNS signs each message (``SignatureVersion`` 1: SHA1withRSA, 2: SHA256withRSA) with the key of
the X.509 certificate at ``SigningCertURL``, which must be an https URL on an SNS host
(``HERALD_SNS_ALLOWED_HOST_PATTERN``). A ``SubscriptionConfirmation`` is confirmed by a GET of
its ``SubscribeURL``, held to the same host rule. A ``Notification``'s ``Message`` is the SES
notification (``notificationType``, or ``eventType`` for configuration-set event publishing):
``Bounce`` (``bounceType`` Permanent: hard; Transient or Undetermined: soft) or ``Complaint``.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import ssl
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from backend.config import Settings
from backend.errors import UnauthenticatedError, UnavailableError, ValidationError
from backend.services.email_feedback.recording import (
    DELIVERY_ID_KEY,
    Feedback,
    FeedbackKind,
    clean_delivery_id,
    delivery_id_from_message_id,
    load_json,
)

PROVIDER = "ses"
DELIVERY_ID_HEADER = "x-herald-delivery-id"
_CONFIRMATION_KEYS = (
    "Message",
    "MessageId",
    "SubscribeURL",
    "Timestamp",
    "Token",
    "TopicArn",
    "Type",
)
_SIGNED_KEYS = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": _CONFIRMATION_KEYS,
    "UnsubscribeConfirmation": _CONFIRMATION_KEYS,
}
_HASHES: dict[str, type[hashes.HashAlgorithm]] = {"1": hashes.SHA1, "2": hashes.SHA256}
_CERT_CACHE_SIZE = 32


@dataclass(frozen=True, slots=True)
class SnsMessage:
    type: str
    topic_arn: str
    body: dict[str, Any]


def parse_envelope(raw: bytes) -> SnsMessage:
    """The SNS message in a request body (SNS posts JSON as ``text/plain``)."""
    body = load_json(raw, "an SNS message", dict)
    kind = body.get("Type")
    if kind not in _SIGNED_KEYS:
        raise ValidationError(f"Unknown SNS message type: {kind!r}")
    for key in ("Signature", "SignatureVersion", "SigningCertURL", "TopicArn"):
        if not isinstance(body.get(key), str):
            raise UnauthenticatedError(f"The SNS message has no {key}")
    return SnsMessage(type=kind, topic_arn=body["TopicArn"], body=body)


def string_to_sign(body: dict[str, Any]) -> bytes:
    """The canonical text SNS signs: each present key of the type's list, ``key\\nvalue\\n``."""
    lines = []
    for key in _SIGNED_KEYS[body["Type"]]:
        value = body.get(key)
        if value is None:
            continue  # Subject is optional on notifications
        lines.append(f"{key}\n{value}\n")
    return "".join(lines).encode()


def check_host(url: str, settings: Settings, *, what: str) -> str:
    """``url`` if it is https on a host the settings allow; else UnauthenticatedError."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if parts.scheme != "https" or not host:
        raise UnauthenticatedError(f"The SNS {what} is not an https URL")
    if not re.fullmatch(settings.sns_allowed_host_pattern, host):
        raise UnauthenticatedError(f"The SNS {what} is on a host that is not allowed: {host}")
    return url


class SnsVerifier:
    """Checks SNS signatures; keeps the last few signing certificates (SNS rotates them
    rarely, and every message names one)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._certs: OrderedDict[str, rsa.RSAPublicKey] = OrderedDict()

    def _client(self) -> httpx.AsyncClient:
        verify: ssl.SSLContext | bool = True
        if self._settings.sns_ca_file:
            verify = ssl.create_default_context(cafile=self._settings.sns_ca_file)
        return httpx.AsyncClient(
            timeout=self._settings.sns_timeout_seconds, verify=verify, follow_redirects=False
        )

    async def _public_key(self, url: str) -> rsa.RSAPublicKey:
        cached = self._certs.get(url)
        if cached is not None:
            self._certs.move_to_end(url)
            return cached
        check_host(url, self._settings, what="SigningCertURL")
        response = await self._get(url, "fetching the SNS signing certificate")
        try:
            key = x509.load_pem_x509_certificate(response.content).public_key()
        except ValueError as exc:
            raise UnauthenticatedError(
                "The SNS signing certificate is not a PEM certificate"
            ) from exc
        if not isinstance(key, rsa.RSAPublicKey):
            raise UnauthenticatedError("The SNS signing certificate has no RSA key")
        self._certs[url] = key
        while len(self._certs) > _CERT_CACHE_SIZE:
            self._certs.popitem(last=False)
        return key

    async def verify(self, message: SnsMessage) -> None:
        """Raise UnauthenticatedError unless SNS signed ``message`` (and its topic is allowed)."""
        body = message.body
        algorithm = _HASHES.get(str(body["SignatureVersion"]))
        if algorithm is None:
            raise UnauthenticatedError(
                f"Unsupported SNS SignatureVersion {body['SignatureVersion']!r}"
            )
        topics = self._settings.sns_topic_arns
        if topics and message.topic_arn not in topics:
            raise UnauthenticatedError(f"The SNS topic {message.topic_arn} is not accepted")
        try:
            signature = base64.b64decode(body["Signature"], validate=True)
        except (binascii.Error, ValueError) as exc:
            raise UnauthenticatedError("The SNS Signature is not base64") from exc
        key = await self._public_key(body["SigningCertURL"])
        try:
            key.verify(signature, string_to_sign(body), padding.PKCS1v15(), algorithm())
        except InvalidSignature as exc:
            raise UnauthenticatedError("The SNS signature does not match the message") from exc

    async def confirm_subscription(self, message: SnsMessage) -> None:
        """Confirm a (verified) ``SubscriptionConfirmation`` by a GET of its SubscribeURL."""
        url = message.body.get("SubscribeURL")
        if not isinstance(url, str):
            raise ValidationError("The SubscriptionConfirmation has no SubscribeURL")
        check_host(url, self._settings, what="SubscribeURL")
        await self._get(url, "confirming the SNS subscription")

    async def _get(self, url: str, doing: str) -> httpx.Response:
        """A GET of a (host-checked) SNS URL; UnavailableError unless it answers 200."""
        try:
            async with self._client() as client:
                response = await client.get(url)
        except httpx.HTTPError as exc:
            raise UnavailableError(f"{doing} failed: {exc}") from exc
        if response.status_code != 200:
            raise UnavailableError(f"{doing} answered HTTP {response.status_code}")
        return response


def _delivery_id(mail: dict[str, Any]) -> str | None:
    """Herald's delivery id from the original mail: its X-Herald-Delivery-Id header (SES
    includes headers when "Include original headers" is on), or its Message-ID."""
    for header in mail.get("headers") or []:
        if isinstance(header, dict) and str(header.get("name", "")).lower() == DELIVERY_ID_HEADER:
            found = clean_delivery_id(header.get("value"))
            if found:
                return found
    tags = mail.get("tags")
    if isinstance(tags, dict):
        values = tags.get(DELIVERY_ID_KEY)
        if isinstance(values, list) and values:
            found = clean_delivery_id(values[0])
            if found:
                return found
    common = mail.get("commonHeaders")
    if isinstance(common, dict):
        found = delivery_id_from_message_id(common.get("messageId"))
        if found:
            return found
    for header in mail.get("headers") or []:
        if isinstance(header, dict) and str(header.get("name", "")).lower() == "message-id":
            return delivery_id_from_message_id(header.get("value"))
    return None


def parse_notification(message: SnsMessage) -> list[Feedback]:
    """The bounces and complaints of a (verified) SNS ``Notification`` from SES; other SES
    notification types (Delivery, Send...) give nothing."""
    try:
        ses = json.loads(message.body.get("Message") or "")
    except (ValueError, TypeError) as exc:
        raise ValidationError("The SNS Message is not an SES notification (not JSON)") from exc
    if not isinstance(ses, dict):
        raise ValidationError("The SNS Message is not an SES notification")
    kind = ses.get("notificationType") or ses.get("eventType")
    mail_field = ses.get("mail")
    mail: dict[str, Any] = mail_field if isinstance(mail_field, dict) else {}
    delivery_id = _delivery_id(mail)
    if kind == "Bounce":
        bounce = ses.get("bounce")
        if not isinstance(bounce, dict):
            raise ValidationError("The SES Bounce notification has no 'bounce'")
        hard = bounce.get("bounceType") == "Permanent"
        subtype = f"{bounce.get('bounceType')}/{bounce.get('bounceSubType')}"
        items = []
        for recipient in bounce.get("bouncedRecipients") or []:
            if not isinstance(recipient, dict) or not recipient.get("emailAddress"):
                continue
            details = [
                str(recipient[key]) for key in ("status", "diagnosticCode") if recipient.get(key)
            ]
            items.append(
                Feedback(
                    kind=FeedbackKind.HARD_BOUNCE if hard else FeedbackKind.SOFT_BOUNCE,
                    address=str(recipient["emailAddress"]),
                    provider=PROVIDER,
                    reason=" ".join([subtype, *details]),
                    delivery_id=delivery_id,
                )
            )
        return items
    if kind == "Complaint":
        complaint = ses.get("complaint")
        if not isinstance(complaint, dict):
            raise ValidationError("The SES Complaint notification has no 'complaint'")
        feedback_type = complaint.get("complaintFeedbackType") or "complaint"
        return [
            Feedback(
                kind=FeedbackKind.COMPLAINT,
                address=str(recipient["emailAddress"]),
                provider=PROVIDER,
                reason=str(feedback_type),
                delivery_id=delivery_id,
            )
            for recipient in complaint.get("complainedRecipients") or []
            if isinstance(recipient, dict) and recipient.get("emailAddress")
        ]
    return []
