"""Provider event webhooks against the shapes and signature schemes each provider documents,
signed in the test with real keys: Amazon SES through SNS (signature versions 1 and 2, the
signing certificate fetched over HTTPS from a local stand-in for SNS), SendGrid (ECDSA P-256),
Postmark (basic auth) and Mailgun (HMAC-SHA256, one use per token)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding
from redis.asyncio import Redis

from backend.channels.email import signed_delivery_id
from backend.config import Settings
from backend.db.history.base import DeliveryRecord, DeliveryStatus, HistoryStore
from backend.services.live import live_channel
from tests.conftest import GraphQL
from tests.email_feedback.conftest import (
    MAILGUN_KEY,
    POSTMARK_PASSWORD,
    POSTMARK_USER,
    SendGridKeys,
    SnsHost,
    sent_email,
    unique_address,
)
from tests.factories import token_for

TOPIC = "arn:aws:sns:eu-west-1:123456789012:herald-ses-feedback"
SUPPRESSIONS = """
query($filter: EmailSuppressionFilter) {
  emailSuppressions(filter: $filter, first: 10) {
    edges { node { address kind provider reason deliveryId } }
  }
}"""


@dataclass
class Feedback:
    """The provider endpoints' client, the history they change, and the suppression list as
    a manager reads it over GraphQL."""

    client: httpx.AsyncClient
    history: HistoryStore
    gql: GraphQL
    settings: Settings

    async def suppressed(self, address: str) -> list[dict[str, Any]]:
        body = await self.gql(
            SUPPRESSIONS,
            {"filter": {"addressContains": address}},
            token=token_for(self.settings, "manager"),
        )
        assert "errors" not in body, body
        return [e["node"] for e in body["data"]["emailSuppressions"]["edges"]]

    async def sent_email(self, label: str) -> tuple[DeliveryRecord, str]:
        """A sent email delivery in the history, and a new address of ``label`` for it."""
        return await sent_email(self.history), unique_address(label)

    async def kinds(self, address: str) -> list[str]:
        return [row["kind"] for row in await self.suppressed(address)]

    async def statuses(self, *records: DeliveryRecord) -> dict[str, DeliveryStatus]:
        return {r.id: r.status for r in await self.history.get_many([r.id for r in records])}

    async def assert_hard_soft_and_complaint(
        self,
        answers: list[httpx.Response],
        records: tuple[DeliveryRecord, DeliveryRecord, DeliveryRecord],
        addresses: list[str],
    ) -> None:
        """Three reports taken, about ``records`` and ``addresses`` in this order: a hard
        bounce (bounced, suppressed), a soft one (still sent, not suppressed) and a spam
        complaint (complained, suppressed)."""
        assert [a.status_code for a in answers] == [200, 200, 200], [a.text for a in answers]
        hard, soft, spam = records
        assert await self.statuses(*records) == {
            hard.id: DeliveryStatus.BOUNCED,
            soft.id: DeliveryStatus.SENT,
            spam.id: DeliveryStatus.COMPLAINED,
        }
        assert await self.kinds(addresses[0]) == ["HARD_BOUNCE"]
        assert await self.suppressed(addresses[1]) == []
        assert await self.kinds(addresses[2]) == ["COMPLAINT"]

    async def assert_untouched(self, record: DeliveryRecord, address: str) -> None:
        """A refused report changed nothing: the delivery is still sent, the address free."""
        stored = await self.history.get(record.id)
        assert stored is not None and stored.status is DeliveryStatus.SENT
        assert await self.suppressed(address) == []


@pytest.fixture
def feedback(
    provider_client: httpx.AsyncClient, history: HistoryStore, gql: GraphQL, settings: Settings
) -> Feedback:
    return Feedback(provider_client, history, gql, settings)


def assert_unauthenticated(responses: list[httpx.Response]) -> None:
    for response in responses:
        assert response.status_code == 401, response.text
        assert response.json()["error"]["code"] == "UNAUTHENTICATED"


# --- Amazon SES through SNS ---------------------------------------------------------------------

SNS_KEYS = {
    "Notification": ["Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"],
    "SubscriptionConfirmation": [
        "Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type",
    ],
}  # fmt: skip


def sns_sign(host: SnsHost, message: dict[str, Any], *, version: str = "1") -> dict[str, Any]:
    """Sign as SNS does: "key\\nvalue\\n" for each present key of the type's list, in that
    order, RSA PKCS#1 v1.5 with SHA1 (version 1) or SHA256 (version 2)."""
    text = "".join(
        f"{key}\n{message[key]}\n" for key in SNS_KEYS[message["Type"]] if key in message
    )
    digest = hashes.SHA1() if version == "1" else hashes.SHA256()
    signature = host.signing_key.sign(text.encode(), padding.PKCS1v15(), digest)
    return {
        **message,
        "SignatureVersion": version,
        "Signature": base64.b64encode(signature).decode(),
        "SigningCertURL": host.cert_url,
    }


def sns_notification(host: SnsHost, ses: dict[str, Any], *, version: str = "1") -> dict[str, Any]:
    return sns_sign(
        host,
        {
            "Type": "Notification",
            "MessageId": str(uuid.uuid4()),
            "TopicArn": TOPIC,
            "Message": json.dumps(ses),
            "Timestamp": "2026-12-06T05:00:00.000Z",
            "UnsubscribeURL": f"{host.base_url}/?Action=Unsubscribe",
        },
        version=version,
    )


def ses_mail(
    *, message_id: str | None = None, headers: list[dict[str, str]] | None = None
) -> dict[str, Any]:
    return {
        "timestamp": "2026-12-06T04:59:58.000Z",
        "source": "noreply@herald.example",
        "messageId": "0100018c3f5e8a1b-1f0e-4b2c-9d3e-5a6b7c8d9e0f-000000",
        "destination": ["someone@example.org"],
        "headersTruncated": False,
        "headers": headers or [],
        "commonHeaders": {
            "from": ["Herald <noreply@herald.example>"],
            "to": ["someone@example.org"],
            "messageId": message_id or "<unrelated@elsewhere>",
            "subject": "Metropolis is here",
        },
    }


def ses_event(kind: str, report: dict[str, Any], mail: dict[str, Any]) -> dict[str, Any]:
    """An SES notification of ``kind`` (Bounce, Complaint): the report under the kind's own
    key, and the mail it is about."""
    return {"notificationType": kind, kind.lower(): report, "mail": mail}


async def post_sns(client: httpx.AsyncClient, body: dict[str, Any]) -> httpx.Response:
    # SNS posts JSON with Content-Type text/plain and names the type in a header.
    return await client.post(
        "/providers/email/ses/events",
        content=json.dumps(body),
        headers={
            "Content-Type": "text/plain; charset=UTF-8",
            "x-amz-sns-message-type": body["Type"],
        },
    )


async def test_ses_permanent_bounce_v1_bounces_the_delivery_and_suppresses_the_address(
    feedback: Feedback, sns_host: SnsHost, feedback_settings: Settings
) -> None:
    record, address = await feedback.sent_email("gone")
    ses = ses_event(
        "Bounce",
        {
            "bounceType": "Permanent",
            "bounceSubType": "General",
            "bouncedRecipients": [
                {
                    "emailAddress": address,
                    "action": "failed",
                    "status": "5.1.1",
                    "diagnosticCode": "smtp; 550 5.1.1 user unknown",
                }
            ],
            "timestamp": "2026-12-06T05:00:00.000Z",
            "feedbackId": "0100018c3f5e8a1b-bounce-000000",
            "reportingMTA": "dsn; a8-70.smtp-out.amazonses.com",
        },
        # Herald's Message-ID (its tag is not checked: SNS's signature vouches for the
        # report), echoed in commonHeaders.
        ses_mail(message_id=f"<herald.{signed_delivery_id(b'k', record.id)}@herald.example>"),
    )
    redis = Redis.from_url(feedback_settings.redis_url)
    pubsub = redis.pubsub()
    await pubsub.subscribe(live_channel())
    try:
        response = await post_sns(feedback.client, sns_notification(sns_host, ses, version="1"))
        feed: list[dict[str, Any]] = []
        for _ in range(50):
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1)
            if message is not None:
                wire = orjson.loads(message["data"])
                feed += [i for i in wire.get("items", []) if i["id"] == record.id]
                if feed:
                    break
    finally:
        await pubsub.aclose()
        await redis.aclose()

    assert response.status_code == 200, response.text
    assert response.json() == {"received": 1, "matched": 1, "suppressed": 1}
    stored = await feedback.history.get(record.id)
    assert stored is not None and stored.status is DeliveryStatus.BOUNCED
    last = stored.timeline[-1]
    assert last.status is DeliveryStatus.BOUNCED
    assert last.reason is not None
    assert "hard bounce reported by ses" in last.reason and "550 5.1.1 user unknown" in last.reason
    [row] = await feedback.suppressed(address)
    assert row["kind"] == "HARD_BOUNCE" and row["provider"] == "ses"
    assert row["deliveryId"] == record.id
    # The live delivery feed carried the change.
    [update] = feed
    assert update["status"] == "bounced" and update["sequence"] == 4


async def test_ses_complaint_v2_matched_by_the_delivery_header(
    feedback: Feedback, sns_host: SnsHost
) -> None:
    record, address = await feedback.sent_email("annoyed")
    ses = ses_event(
        "Complaint",
        {
            "userAgent": "ExampleCorp Feedback Loop (V0.01)",
            "complainedRecipients": [{"emailAddress": address}],
            "complaintFeedbackType": "abuse",
            "timestamp": "2026-12-06T05:00:00.000Z",
            "feedbackId": "0100018c-complaint-000000",
        },
        ses_mail(headers=[{"name": "X-Herald-Delivery-Id", "value": record.id}]),
    )
    response = await post_sns(feedback.client, sns_notification(sns_host, ses, version="2"))

    assert response.status_code == 200, response.text
    stored = await feedback.history.get(record.id)
    assert stored is not None and stored.status is DeliveryStatus.COMPLAINED
    assert "spam complaint reported by ses" in (stored.timeline[-1].reason or "")
    [row] = await feedback.suppressed(address)
    assert row["kind"] == "COMPLAINT"


async def test_ses_transient_bounce_only_records(feedback: Feedback, sns_host: SnsHost) -> None:
    record, address = await feedback.sent_email("full")
    ses = ses_event(
        "Bounce",
        {
            "bounceType": "Transient",
            "bounceSubType": "MailboxFull",
            "bouncedRecipients": [{"emailAddress": address, "status": "4.2.2"}],
            "timestamp": "2026-12-06T05:00:00.000Z",
            "feedbackId": "x",
        },
        # A Message-ID from before the tag.
        ses_mail(message_id=f"<herald.{record.id}@herald.example>"),
    )
    response = await post_sns(feedback.client, sns_notification(sns_host, ses))

    assert response.status_code == 200, response.text
    assert response.json() == {"received": 1, "matched": 1, "suppressed": 0}
    stored = await feedback.history.get(record.id)
    assert stored is not None and stored.status is DeliveryStatus.SENT
    assert len(stored.timeline) == 4
    assert "soft bounce reported by ses" in (stored.timeline[-1].reason or "")
    assert "MailboxFull" in (stored.timeline[-1].reason or "")
    assert await feedback.suppressed(address) == []

    # The same report again (a provider's retry): nothing more in the timeline.
    again = await post_sns(feedback.client, sns_notification(sns_host, ses))
    assert again.json() == {"received": 1, "matched": 0, "suppressed": 0}
    stored = await feedback.history.get(record.id)
    assert stored is not None and len(stored.timeline) == 4


async def test_sns_subscription_confirmation_is_confirmed_by_a_get_of_subscribe_url(
    feedback: Feedback, sns_host: SnsHost
) -> None:
    token = uuid.uuid4().hex
    url = f"{sns_host.base_url}/confirm?Action=ConfirmSubscription&TopicArn={TOPIC}&Token={token}"
    message = sns_sign(
        sns_host,
        {
            "Type": "SubscriptionConfirmation",
            "MessageId": str(uuid.uuid4()),
            "Token": token,
            "TopicArn": TOPIC,
            "Message": "You have chosen to subscribe to the topic. Visit the SubscribeURL.",
            "SubscribeURL": url,
            "Timestamp": "2026-12-06T05:00:00.000Z",
        },
        version="2",
    )
    response = await post_sns(feedback.client, message)

    assert response.status_code == 200, response.text
    assert response.json() == {"confirmed": True}
    assert any(token in path for path in sns_host.confirmations)


async def test_sns_refuses_a_bad_signature_and_foreign_certificate_hosts(
    feedback: Feedback, sns_host: SnsHost
) -> None:
    record, address = await feedback.sent_email("forged")
    ses = ses_event(
        "Bounce",
        {
            "bounceType": "Permanent",
            "bounceSubType": "General",
            "bouncedRecipients": [{"emailAddress": address}],
        },
        ses_mail(message_id=f"<herald.{record.id}@herald.example>"),
    )
    good = sns_notification(sns_host, ses)
    tampered = {**good, "Message": good["Message"].replace("Permanent", "Permanent ")}
    # 127.0.0.1 serves the same certificate, but is not on the allowed host pattern.
    foreign = {**good, "SigningCertURL": f"https://127.0.0.1:{sns_host.port}/x.pem"}
    plain_http = {**good, "SigningCertURL": f"http://localhost:{sns_host.port}/x.pem"}
    unknown_version = {**good, "SignatureVersion": "3"}
    fetches = sns_host.cert_fetches
    confirm = sns_sign(
        sns_host,
        {
            "Type": "SubscriptionConfirmation",
            "MessageId": "m",
            "Token": "t",
            "TopicArn": TOPIC,
            "Message": "confirm",
            "SubscribeURL": "https://evil.example/confirm",
            "Timestamp": "2026-12-06T05:00:00.000Z",
        },
    )

    answers = [
        await post_sns(feedback.client, body)
        for body in (tampered, foreign, plain_http, unknown_version, confirm)
    ]

    assert_unauthenticated(answers)
    assert "does not match" in answers[0].json()["error"]["message"]
    assert "not allowed" in answers[1].json()["error"]["message"]
    assert "not an https URL" in answers[2].json()["error"]["message"]
    assert "SignatureVersion" in answers[3].json()["error"]["message"]
    assert "not allowed: evil.example" in answers[4].json()["error"]["message"]
    assert sns_host.cert_fetches == fetches  # the foreign hosts were never asked
    await feedback.assert_untouched(record, address)


# --- SendGrid -----------------------------------------------------------------------------------


def sendgrid_signed(
    keys: SendGridKeys, events: list[dict[str, Any]], *, at: float | None = None
) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(events).encode()
    timestamp = str(int(at if at is not None else time.time()))
    signature = keys.private.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return body, {
        "Content-Type": "application/json",
        "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
        "X-Twilio-Email-Event-Webhook-Timestamp": timestamp,
    }


def sendgrid_event(event: str, email: str, delivery_id: str, **fields: Any) -> dict[str, Any]:
    return {
        "email": email,
        "timestamp": int(time.time()),
        "smtp-id": f"<herald.{delivery_id}@herald.example>",
        "event": event,
        "sg_event_id": uuid.uuid4().hex,
        "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0",
        "herald_delivery_id": delivery_id,  # a unique_args custom argument, echoed at top level
        **fields,
    }


async def test_sendgrid_bounce_blocked_dropped_and_spamreport(
    feedback: Feedback, sendgrid_keys: SendGridKeys
) -> None:
    hard, blocked, dropped, spam, delivered, unsub = [
        await sent_email(feedback.history) for _ in range(6)
    ]
    names = ("hard", "blocked", "dropped", "spam", "ok", "unsub")
    addresses = [unique_address(n) for n in names]
    events = [
        sendgrid_event("bounce", addresses[0], hard.id, type="bounce", status="5.1.1",
                       reason="550 5.1.1 The email account that you tried to reach does not exist"),
        sendgrid_event("bounce", addresses[1], blocked.id, type="blocked", status="4.0.0",
                       reason="421 try again later"),
        sendgrid_event("dropped", addresses[2], dropped.id, reason="Bounced Address"),
        sendgrid_event("spamreport", addresses[3], spam.id),
        sendgrid_event("delivered", addresses[4], delivered.id, response="250 OK"),
        # Dropped because the user unsubscribed at SendGrid: not a bad address.
        sendgrid_event("dropped", addresses[5], unsub.id, reason="Unsubscribed Address"),
    ]  # fmt: skip
    body, headers = sendgrid_signed(sendgrid_keys, events)
    response = await feedback.client.post(
        "/providers/email/sendgrid/events", content=body, headers=headers
    )

    assert response.status_code == 200, response.text
    assert response.json() == {"received": 5, "matched": 5, "suppressed": 3}
    assert await feedback.statuses(hard, blocked, dropped, spam, delivered, unsub) == {
        hard.id: DeliveryStatus.BOUNCED,
        blocked.id: DeliveryStatus.SENT,
        dropped.id: DeliveryStatus.BOUNCED,
        spam.id: DeliveryStatus.COMPLAINED,
        delivered.id: DeliveryStatus.SENT,
        unsub.id: DeliveryStatus.SENT,
    }
    kinds = {a: await feedback.kinds(a) for a in addresses}
    assert kinds == {
        addresses[0]: ["HARD_BOUNCE"],
        addresses[1]: [],
        addresses[2]: ["HARD_BOUNCE"],
        addresses[3]: ["COMPLAINT"],
        addresses[4]: [],
        addresses[5]: [],
    }


async def test_sendgrid_refuses_a_bad_or_old_signature(
    feedback: Feedback, sendgrid_keys: SendGridKeys
) -> None:
    record, address = await feedback.sent_email("sg-forged")
    events = [sendgrid_event("bounce", address, record.id, type="bounce")]
    body, headers = sendgrid_signed(sendgrid_keys, events)
    other_key = SendGridKeys(ec.generate_private_key(ec.SECP256R1()), "")
    _, foreign = sendgrid_signed(other_key, events)
    old_body, old = sendgrid_signed(sendgrid_keys, events, at=time.time() - 3600)

    url = "/providers/email/sendgrid/events"
    unsigned = {"Content-Type": "application/json"}
    tampered = body.replace(b"bounce", b"spamreport", 1)
    answers = [
        await feedback.client.post(url, content=tampered, headers=headers),
        await feedback.client.post(url, content=body, headers=foreign),
        await feedback.client.post(url, content=old_body, headers=old),
        await feedback.client.post(url, content=body, headers=unsigned),
    ]

    assert_unauthenticated(answers)
    assert "too old" in answers[2].json()["error"]["message"]
    await feedback.assert_untouched(record, address)


# --- Postmark -----------------------------------------------------------------------------------


def postmark_bounce(
    address: str, delivery_id: str, bounce_type: str, type_code: int
) -> dict[str, Any]:
    return {
        "RecordType": "Bounce",
        "MessageStream": "outbound",
        "ID": 4323372036854775807,
        "Type": bounce_type,
        "TypeCode": type_code,
        "Name": "Hard bounce" if bounce_type == "HardBounce" else "Soft bounce",
        "Tag": "movie_added",
        "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
        "Metadata": {"herald_delivery_id": delivery_id},
        "ServerID": 23,
        "Description": (
            "The server was unable to deliver your message (ex: unknown user, mailbox not found)."
        ),
        "Details": "smtp;550 5.1.1 The email account that you tried to reach does not exist.",
        "Email": address,
        "From": "noreply@herald.example",
        "BouncedAt": "2026-12-06T05:00:00Z",
        "DumpAvailable": True,
        "Inactive": True,
        "CanActivate": True,
        "Subject": "Metropolis is here",
        "Content": "Return-Path:<>...",
    }


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}", "Content-Type": "application/json"}


async def test_postmark_hard_soft_and_spam_complaint_with_basic_auth(feedback: Feedback) -> None:
    hard, soft, spam = [await sent_email(feedback.history) for _ in range(3)]
    addresses = [unique_address(n) for n in ("pm-hard", "pm-soft", "pm-spam")]
    complaint = {
        "RecordType": "SpamComplaint",
        "MessageStream": "outbound",
        "ID": 42,
        "Type": "SpamComplaint",
        "TypeCode": 512,
        "Name": "Spam complaint",
        "Tag": "movie_added",
        "MessageID": "00000000-0000-0000-0000-000000000000",
        "Metadata": {"herald_delivery_id": spam.id},
        "ServerID": 1234,
        "Description": "",
        "Details": "Test spam complaint details",
        "Email": addresses[2],
        "From": "noreply@herald.example",
        "BouncedAt": "2026-12-06T05:00:00Z",
        "DumpAvailable": True,
        "Inactive": True,
        "CanActivate": False,
        "Subject": "Metropolis is here",
    }
    auth = basic(POSTMARK_USER, POSTMARK_PASSWORD)
    answers = [
        await feedback.client.post("/providers/email/postmark/events", json=body, headers=auth)
        for body in (
            postmark_bounce(addresses[0], hard.id, "HardBounce", 1),
            postmark_bounce(addresses[1], soft.id, "SoftBounce", 4096),
            complaint,
        )
    ]

    await feedback.assert_hard_soft_and_complaint(answers, (hard, soft, spam), addresses)


async def test_postmark_refuses_missing_or_wrong_credentials(feedback: Feedback) -> None:
    record, address = await feedback.sent_email("pm-forged")
    body = postmark_bounce(address, record.id, "HardBounce", 1)
    answers = [
        await feedback.client.post("/providers/email/postmark/events", json=body),
        await feedback.client.post(
            "/providers/email/postmark/events", json=body, headers=basic(POSTMARK_USER, "guess")
        ),
    ]
    assert_unauthenticated(answers)
    await feedback.assert_untouched(record, address)


# --- Mailgun ------------------------------------------------------------------------------------


def mailgun_body(
    event_data: dict[str, Any], *, key: str = MAILGUN_KEY, at: float | None = None
) -> dict[str, Any]:
    timestamp = str(int(at if at is not None else time.time()))
    token = uuid.uuid4().hex + uuid.uuid4().hex[:18]
    signature = hmac.new(key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()
    return {
        "signature": {"timestamp": timestamp, "token": token, "signature": signature},
        "event-data": event_data,
    }


def mailgun_failed(address: str, delivery_id: str, severity: str) -> dict[str, Any]:
    return {
        "id": "G9Bn5sl1TC6nu79C8C0bwg",
        "timestamp": time.time(),
        "log-level": "error",
        "event": "failed",
        "severity": severity,
        "reason": "bounce" if severity == "permanent" else "generic",
        "recipient": address,
        "recipient-domain": "example.org",
        "delivery-status": {
            "code": 550 if severity == "permanent" else 452,
            "message": "",
            "description": "No such user" if severity == "permanent" else "Mailbox full",
            "attempt-no": 1,
        },
        "message": {
            "headers": {
                "to": address,
                "message-id": f"herald.{delivery_id}@herald.example",
                "from": "noreply@herald.example",
                "subject": "Metropolis is here",
            },
            "size": 111,
        },
        "user-variables": {"herald_delivery_id": delivery_id},
    }


async def test_mailgun_failed_and_complained(feedback: Feedback) -> None:
    hard, soft, spam = [await sent_email(feedback.history) for _ in range(3)]
    addresses = [unique_address(n) for n in ("mg-hard", "mg-soft", "mg-spam")]
    complained = {
        "id": "-Agny091SquKnsrW2NEKUA",
        "timestamp": time.time(),
        "log-level": "warn",
        "event": "complained",
        "recipient": addresses[2],
        # No user variables here: the echoed Message-ID names the delivery.
        "message": {"headers": {"message-id": f"herald.{spam.id}@herald.example"}},
    }
    answers = [
        await feedback.client.post("/providers/email/mailgun/events", json=mailgun_body(data))
        for data in (
            mailgun_failed(addresses[0], hard.id, "permanent"),
            mailgun_failed(addresses[1], soft.id, "temporary"),
            complained,
        )
    ]

    await feedback.assert_hard_soft_and_complaint(answers, (hard, soft, spam), addresses)
    hard_record = next(r for r in await feedback.history.get_many([hard.id]))
    assert "No such user" in (hard_record.timeline[-1].reason or "")


async def test_mailgun_refuses_bad_signatures_old_timestamps_and_replays(
    feedback: Feedback,
) -> None:
    first, second = await sent_email(feedback.history), await sent_email(feedback.history)
    address = unique_address("mg-replay")
    forged = mailgun_body(mailgun_failed(address, first.id, "permanent"), key="not-the-key")
    old = mailgun_body(mailgun_failed(address, first.id, "permanent"), at=time.time() - 3600)
    once = mailgun_body(mailgun_failed(address, first.id, "permanent"))
    # The same signature (timestamp, token) replayed with other event data.
    replay = {**once, "event-data": mailgun_failed(address, second.id, "permanent")}

    refused = [
        await feedback.client.post("/providers/email/mailgun/events", json=body)
        for body in (forged, old)
    ]
    accepted = await feedback.client.post("/providers/email/mailgun/events", json=once)
    replayed = await feedback.client.post("/providers/email/mailgun/events", json=replay)

    assert_unauthenticated([*refused, replayed])
    assert "does not match" in refused[0].json()["error"]["message"]
    assert "too old" in refused[1].json()["error"]["message"]
    assert "already used" in replayed.json()["error"]["message"]
    assert accepted.status_code == 200, accepted.text
    assert await feedback.statuses(first, second) == {
        first.id: DeliveryStatus.BOUNCED,
        second.id: DeliveryStatus.SENT,
    }


async def test_a_provider_retry_of_the_same_report_changes_nothing_more(feedback: Feedback) -> None:
    record, address = await feedback.sent_email("twice")
    auth = basic(POSTMARK_USER, POSTMARK_PASSWORD)
    body = postmark_bounce(address, record.id, "HardBounce", 1)
    answers = [
        await feedback.client.post("/providers/email/postmark/events", json=body, headers=auth)
        for _ in range(2)
    ]
    assert [a.json() for a in answers] == [
        {"received": 1, "matched": 1, "suppressed": 1},
        {"received": 1, "matched": 0, "suppressed": 0},
    ]
    stored = await feedback.history.get(record.id)
    assert stored is not None
    assert [c.status for c in stored.timeline].count(DeliveryStatus.BOUNCED) == 1
