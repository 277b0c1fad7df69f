"""Delivery status notifications (RFC 3464) and complaint reports (ARF, RFC 5965) received
over SMTP, for mail sent through a plain relay.

A DSN is ``multipart/report; report-type=delivery-status``: its ``message/delivery-status``
part has per-recipient fields (``Final-Recipient``, ``Action``, ``Status``,
``Diagnostic-Code``); ``Action: failed`` with a ``5.x.x`` status is a hard bounce, with a
``4.x.x`` status (or ``Action: delayed``) a soft one. An ARF report is
``multipart/report; report-type=feedback-report`` whose ``message/feedback-report`` part names
the ``Feedback-Type`` (abuse...) and ``Original-Rcpt-To``; it is a complaint.

The delivery is found from the VERP envelope recipient (``bounces+<delivery id>.<tag>@<bounce
domain>``), else from the returned message's Message-ID (``<herald.<delivery id>.<tag>@...>``;
complaint reports go to a feedback address, not a VERP one). Anyone can send mail to the
bounce domain, so a delivery is named only by a tag that checks out (an HMAC of its id under
``Settings.bounce_key``, ``channels.email.verified_delivery_id``): knowing an event's and a
user's ids is not enough to mark their email bounced. The returned X-Herald-Delivery-Id header
carries no tag and names nothing here. A report that names no delivery suppresses nothing
(``Feedback.trusted`` is False).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from email import message_from_bytes, policy
from email.message import EmailMessage, Message

from backend.channels.email import verified_delivery_id
from backend.errors import ValidationError
from backend.services.email_feedback.recording import (
    Feedback,
    FeedbackKind,
    delivery_id_from_verp,
    message_id_token,
)

PROVIDER = "dsn"
_STATUS = re.compile(r"^([245])\.\d{1,3}\.\d{1,3}")
_HEADER_LINE = re.compile(r"^([A-Za-z0-9-]+):\s*(.*)$")


def _field_groups(part: Message) -> list[dict[str, str]]:
    """The field groups of a ``message/delivery-status`` or ``message/feedback-report`` part
    (the per-message group first), field names lower-cased."""
    payload = part.get_payload()
    groups: list[dict[str, str]] = []
    if isinstance(payload, list):
        # The email package parses message/delivery-status into one Message per group.
        for block in payload:
            if isinstance(block, Message):
                groups.append({k.lower(): str(v) for k, v in block.items()})
        return groups
    text = part.get_payload(decode=True)
    raw = text.decode(errors="replace") if isinstance(text, bytes) else str(payload)
    current: dict[str, str] = {}
    last: str | None = None
    for line in raw.splitlines():
        if not line.strip():
            if current:
                groups.append(current)
                current, last = {}, None
            continue
        if line[0] in " \t" and last is not None:
            current[last] += " " + line.strip()
            continue
        found = _HEADER_LINE.match(line)
        if found:
            last = found.group(1).lower()
            current[last] = found.group(2).strip()
    if current:
        groups.append(current)
    return groups


def _address(value: str | None) -> str:
    """The address of an ``addr-type; address`` field (``rfc822; alice@example.com``)."""
    if not value:
        return ""
    return value.partition(";")[2].strip().strip("<>") if ";" in value else value.strip("<>")


def _returned_message(report: Message) -> Message | None:
    for part in report.walk():
        kind = part.get_content_type()
        if kind in ("message/rfc822", "text/rfc822-headers"):
            payload = part.get_payload()
            if isinstance(payload, list) and payload and isinstance(payload[0], Message):
                return payload[0]
            if isinstance(payload, str):
                return message_from_bytes(payload.encode(), policy=policy.default)
    return None


def _delivery_id(envelope_recipients: Sequence[str], report: Message, key: bytes) -> str | None:
    for recipient in envelope_recipients:
        found = verified_delivery_id(key, delivery_id_from_verp(recipient))
        if found:
            return found
    original = _returned_message(report)
    if original is not None:
        return verified_delivery_id(key, message_id_token(original.get("Message-ID")))
    return None


def parse(raw: bytes, *, key: bytes, envelope_recipients: Sequence[str] = ()) -> list[Feedback]:
    """The bounces or complaint a received report describes, the delivery named only by a tag
    that checks out under ``key``. ValidationError when ``raw`` is not a delivery status
    notification or a feedback report."""
    report = message_from_bytes(raw, policy=policy.default)
    if not isinstance(report, EmailMessage) or report.get_content_type() != "multipart/report":
        raise ValidationError("The message is not a multipart/report")
    param = report.get_param("report-type")
    report_type = param.lower() if isinstance(param, str) else ""
    delivery_id = _delivery_id(envelope_recipients, report, key)
    if report_type == "delivery-status":
        return _bounces(report, delivery_id)
    if report_type == "feedback-report":
        return _complaint(report, delivery_id)
    raise ValidationError(f"Unsupported report-type: {report_type or 'none'}")


def _bounces(report: Message, delivery_id: str | None) -> list[Feedback]:
    status_part = next(
        (p for p in report.walk() if p.get_content_type() == "message/delivery-status"), None
    )
    if status_part is None:
        raise ValidationError("The report has no message/delivery-status part")
    groups = _field_groups(status_part)
    items = []
    for group in groups[1:] if len(groups) > 1 else groups:
        action = group.get("action", "").strip().lower()
        status = group.get("status", "").strip()
        address = _address(group.get("final-recipient") or group.get("original-recipient"))
        if not address or action not in ("failed", "delayed"):
            continue  # delivered, relayed, expanded: nothing went wrong
        code = _STATUS.match(status)
        hard = action == "failed" and code is not None and code.group(1) == "5"
        diagnostic = group.get("diagnostic-code", "")
        items.append(
            Feedback(
                kind=FeedbackKind.HARD_BOUNCE if hard else FeedbackKind.SOFT_BOUNCE,
                address=address,
                provider=PROVIDER,
                reason=" ".join(x for x in (action, status, diagnostic) if x),
                delivery_id=delivery_id,
                trusted=False,
            )
        )
    return items


def _complaint(report: Message, delivery_id: str | None) -> list[Feedback]:
    part = next(
        (p for p in report.walk() if p.get_content_type() == "message/feedback-report"), None
    )
    if part is None:
        raise ValidationError("The report has no message/feedback-report part")
    fields: dict[str, str] = {}
    for group in _field_groups(part):
        fields.update(group)
    address = _address(fields.get("original-rcpt-to"))
    if not address:
        original = _returned_message(report)
        address = str(original.get("To", "")) if original is not None else ""
        address = _address(address.rpartition("<")[2].rstrip(">") if "<" in address else address)
    if not address:
        return []
    return [
        Feedback(
            kind=FeedbackKind.COMPLAINT,
            address=address,
            provider=PROVIDER,
            reason=" ".join(
                f"{k}: {fields[k]}" for k in ("feedback-type", "user-agent") if fields.get(k)
            ),
            delivery_id=delivery_id,
            trusted=False,
        )
    ]
