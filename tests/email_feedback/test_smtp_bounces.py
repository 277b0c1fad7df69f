"""Plain SMTP: email goes out with a VERP envelope sender naming its delivery; delivery status
notifications (RFC 3464) and complaint reports (ARF) come back over real SMTP to the
``herald bounces`` listener; a hard bounce suppresses the address, so the next email to it is
skipped, and removing the suppression lets email through again. Real PostgreSQL, a real SMTP
relay (aiosmtpd) and the listener on its own port."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from email.message import EmailMessage, Message

import aiosmtplib
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from backend.bounce_listener import start_listener
from backend.channels import Channel
from backend.channels.email import SmtpEmailSender, signed_delivery_id
from backend.config import Settings
from backend.db.history.base import DeliveryStatus
from backend.db.history.postgres import PostgresHistoryStore
from backend.db.session import create_sessionmaker
from backend.services import suppressions
from backend.services.deliveries import DeliveryContext
from backend.services.email_feedback import FeedbackRecorder
from backend.services.users import UserProfile
from tests.channels.conftest import SmtpServer, running
from tests.conftest import free_port, herald_process_env
from tests.email_feedback.conftest import BOUNCE_DOMAIN, sent_email, unique_address
from tests.factories import RecordingQueue, delivery_context, dispatch_and_send
from tests.processes import wait_for_port

BOUNCE_SECRET = "bounce-secret-of-the-process-test"


class Profiles:
    def __init__(self, email: str) -> None:
        self.email = email

    async def get_many(self, user_ids: Sequence[str]) -> dict[str, UserProfile | None]:
        return {
            u: UserProfile(id=u, email=self.email, first_name="Ada", locale="en") for u in user_ids
        }


@pytest.fixture
def relay() -> Iterator[SmtpServer]:
    with SmtpServer() as server:
        yield server


@pytest.fixture
def smtp_settings(feedback_settings: Settings, relay: SmtpServer) -> Settings:
    return feedback_settings.model_copy(
        update={
            "smtp_host": "127.0.0.1",
            "smtp_port": relay.port,
            "smtp_pool_size": 1,
            # SES has no webhook setting of its own here: its tags header by choice.
            "sns_topic_arns": [],
            "email_provider_headers": ["ses", "sendgrid", "mailgun", "postmark"],
        }
    )


@dataclass
class Listener:
    """The bounce listener on ``port``, recording into ``history``; the settings and database
    a worker sending email through the relay uses."""

    port: int
    history: PostgresHistoryStore
    settings: Settings
    engine: AsyncEngine

    @property
    def sessionmaker(self) -> async_sessionmaker[AsyncSession]:
        return create_sessionmaker(self.engine)

    def email_context(self, sender: SmtpEmailSender, address: str) -> DeliveryContext:
        """A worker's context sending email through ``sender`` to ``address`` for every user."""
        return delivery_context(
            self.settings,
            self.engine,
            None,
            queue=RecordingQueue(),
            users=Profiles(address),
            senders={Channel.EMAIL: sender},
            history=self.history,
        )


@pytest.fixture
async def listener(smtp_settings: Settings, engine: AsyncEngine) -> AsyncIterator[Listener]:
    history = PostgresHistoryStore(engine)
    recorder = FeedbackRecorder(sessionmaker=create_sessionmaker(engine), history=history)
    server = await start_listener(smtp_settings, recorder, host="127.0.0.1", port=0)
    yield Listener(server.sockets[0].getsockname()[1], history, smtp_settings, engine)
    server.close()
    await server.wait_closed()


def _headers(original: Message | None) -> str:
    return "".join(f"{k}: {v}\n" for k, v in (original.items() if original is not None else []))


def dsn(
    *,
    recipient: str,
    action: str,
    status: str,
    diagnostic: str,
    original: Message | None = None,
) -> bytes:
    """A delivery status notification laid out as in RFC 3464 section 10."""
    text = f"""\
From: Mail Delivery Subsystem <MAILER-DAEMON@mx.example.org>
To: <bounces@{BOUNCE_DOMAIN}>
Subject: Returned mail: see transcript for details
Date: Sun, 6 Dec 2026 05:00:01 +0000
Message-ID: <dsn-{uuid.uuid4().hex}@mx.example.org>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
    boundary="RAA14128.773615765/mx.example.org"

This is a MIME-encapsulated message

--RAA14128.773615765/mx.example.org
Content-Type: text/plain

Your message could not be delivered to {recipient}.

--RAA14128.773615765/mx.example.org
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.org
Arrival-Date: Sun, 6 Dec 2026 05:00:00 +0000

Original-Recipient: rfc822;{recipient}
Final-Recipient: rfc822;{recipient}
Action: {action}
Status: {status}
Remote-MTA: dns; mx.example.org
Diagnostic-Code: smtp; {diagnostic}

--RAA14128.773615765/mx.example.org
Content-Type: text/rfc822-headers

{_headers(original)}
--RAA14128.773615765/mx.example.org--
"""
    return text.replace("\n", "\r\n").encode()


def arf(*, recipient: str, original: Message) -> bytes:
    """An abuse report in the Abuse Reporting Format (RFC 5965 appendix B)."""
    text = f"""\
From: <abusedesk@example.org>
Date: Sun, 6 Dec 2026 05:00:01 +0000
Subject: FW: Metropolis is here
To: <fbl@{BOUNCE_DOMAIN}>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report;
    boundary="part1_13d.2e68ed54_boundary"

--part1_13d.2e68ed54_boundary
Content-Type: text/plain; charset="US-ASCII"
Content-Transfer-Encoding: 7bit

This is an email abuse report for an email message received from IP
192.0.2.1 on Sun, 6 Dec 2026 05:00:00 +0000.

--part1_13d.2e68ed54_boundary
Content-Type: message/feedback-report

Feedback-Type: abuse
User-Agent: SomeGenerator/1.0
Version: 1
Original-Mail-From: <bounces@{BOUNCE_DOMAIN}>
Original-Rcpt-To: <{recipient}>
Arrival-Date: Sun, 6 Dec 2026 05:00:00 +0000
Source-IP: 192.0.2.1

--part1_13d.2e68ed54_boundary
Content-Type: text/rfc822-headers

{_headers(original)}
--part1_13d.2e68ed54_boundary--
"""
    return text.replace("\n", "\r\n").encode()


async def deliver_report(port: int, report: bytes, recipient: str) -> tuple[int, str]:
    """Send ``report`` with a null envelope sender, as an MTA sends a bounce."""
    smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=10)
    await smtp.connect()
    try:
        await smtp.mail("")
        await smtp.rcpt(recipient)
        response = await smtp.data(report)
    finally:
        await smtp.quit()
    return response.code, response.message


async def test_hard_bounce_over_smtp_suppresses_the_next_send_until_removed(
    listener: Listener, relay: SmtpServer, committed_suppressions: list[str]
) -> None:
    port, history = listener.port, listener.history
    address = unique_address("dsn-hard")
    committed_suppressions.append(address)
    user = f"dsn-{uuid.uuid4().hex[:8]}"
    sessionmaker = listener.sessionmaker
    sender = SmtpEmailSender(listener.settings)
    async with running(sender):
        # Sent to the address in capitals: suppression ignores case.
        ctx = listener.email_context(sender, address.upper())
        first = await dispatch_and_send(ctx, user, Channel.EMAIL)
        signed = signed_delivery_id(listener.settings.bounce_key, first)
        verp = f"bounces+{signed}@{BOUNCE_DOMAIN}"
        assert sender.envelope_sender(first) == verp
        assert relay.recorder.envelopes == [(verp, [address.upper()])]
        [mail] = relay.recorder.messages
        assert mail["X-Herald-Delivery-Id"] == first
        assert mail["X-PM-Metadata-herald_delivery_id"] == first
        assert mail["X-SES-MESSAGE-TAGS"] == f"herald_delivery_id={first}"
        assert '"herald_delivery_id": "%s"' % first in mail["X-Mailgun-Variables"]  # noqa: UP031

        code, _ = await deliver_report(
            port,
            dsn(
                recipient=address,
                action="failed",
                status="5.1.1",
                diagnostic="550 5.1.1 <%s>: Recipient address rejected: User unknown" % address,  # noqa: UP031
                original=mail,
            ),
            verp,
        )
        assert code == 250
        bounced = await history.get(first)
        assert bounced is not None and bounced.status is DeliveryStatus.BOUNCED
        assert "User unknown" in (bounced.timeline[-1].reason or "")
        async with sessionmaker() as session:
            listed = await suppressions.suppressed(session, addresses=[address])
        assert listed[address].kind == "hard_bounce" and listed[address].provider == "dsn"

        second = await dispatch_and_send(ctx, user, Channel.EMAIL)
        skipped = await history.get(second)
        assert skipped is not None and skipped.status is DeliveryStatus.SKIPPED
        assert "is suppressed" in (skipped.timeline[-1].reason or "")
        assert [a.provider for a in skipped.attempts] == []  # no relay was tried
        assert len(relay.recorder.messages) == 1

        async with sessionmaker() as session:
            assert await suppressions.remove_suppression(session, address=address) == address
            await session.commit()
        third = await dispatch_and_send(ctx, user, Channel.EMAIL)
        sent = await history.get(third)
        assert sent is not None and sent.status is DeliveryStatus.SENT
        assert len(relay.recorder.messages) == 2


async def test_soft_dsn_records_and_arf_complaint_suppresses(
    listener: Listener, relay: SmtpServer, committed_suppressions: list[str]
) -> None:
    port, history = listener.port, listener.history
    delayed_address, annoyed_address = unique_address("dsn-soft"), unique_address("arf")
    committed_suppressions.extend([delayed_address, annoyed_address])
    sessionmaker = listener.sessionmaker
    sender = SmtpEmailSender(listener.settings)
    async with running(sender):
        ids = []
        for address in (delayed_address, annoyed_address):
            ctx = listener.email_context(sender, address)
            ids.append(await dispatch_and_send(ctx, f"dsn-{uuid.uuid4().hex[:8]}", Channel.EMAIL))
    soft_mail, arf_mail = relay.recorder.messages

    soft = dsn(
        recipient=delayed_address,
        action="failed",
        status="4.2.2",
        diagnostic="452 4.2.2 Mailbox full",
        original=soft_mail,
    )
    # The complaint arrives at the feedback address, not a VERP one: the returned
    # headers' Message-ID names the delivery.
    complaint = arf(recipient=annoyed_address, original=arf_mail)
    assert (await deliver_report(port, soft, sender.envelope_sender(ids[0])))[0] == 250
    assert (await deliver_report(port, complaint, f"fbl@{BOUNCE_DOMAIN}"))[0] == 250

    soft_record, complained = await history.get(ids[0]), await history.get(ids[1])
    assert soft_record is not None and soft_record.status is DeliveryStatus.SENT
    assert "soft bounce reported by dsn" in (soft_record.timeline[-1].reason or "")
    assert "4.2.2" in (soft_record.timeline[-1].reason or "")
    assert complained is not None and complained.status is DeliveryStatus.COMPLAINED
    assert "Feedback-Type: abuse".lower() in (complained.timeline[-1].reason or "").lower()
    async with sessionmaker() as session:
        listed = await suppressions.suppressed(
            session, addresses=[delayed_address, annoyed_address]
        )
    assert {a: r.kind for a, r in listed.items()} == {annoyed_address: "complaint"}


async def test_the_listener_takes_only_its_domain_and_trusts_no_unmatched_report(
    listener: Listener,
) -> None:
    port = listener.port
    address = unique_address("dsn-forged")
    smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=10)
    await smtp.connect()
    try:
        await smtp.mail("")
        with pytest.raises(aiosmtplib.SMTPRecipientRefused) as refused:
            await smtp.rcpt("postmaster@elsewhere.example")
    finally:
        await smtp.quit()
    assert refused.value.code == 550

    # A well-formed hard bounce naming no delivery Herald sent: recorded nowhere.
    forged = dsn(recipient=address, action="failed", status="5.1.1", diagnostic="550 unknown")
    code, message = await deliver_report(port, forged, f"bounces+{uuid.uuid4()}@{BOUNCE_DOMAIN}")
    assert code == 250 and "0 deliveries" in message
    # Not a report at all (an auto-reply): accepted and dropped, never bounced back.
    reply = EmailMessage()
    reply["Subject"] = "Out of office"
    reply.set_content("I am away until Monday.")
    code, message = await deliver_report(port, reply.as_bytes(), f"bounces+x@{BOUNCE_DOMAIN}")
    assert code == 250 and "dropped" in message
    async with listener.sessionmaker() as session:
        assert await suppressions.suppressed(session, addresses=[address]) == {}
    await asyncio.sleep(0)


async def test_a_report_naming_a_sent_delivery_without_its_tag_changes_nothing(
    listener: Listener, relay: SmtpServer, committed_suppressions: list[str]
) -> None:
    """Anyone can mail the bounce domain, and delivery ids follow from event and user ids: a
    report matches a delivery only through the tag Herald wrote next to its id."""
    port, history = listener.port, listener.history
    address = unique_address("dsn-spoof")
    committed_suppressions.append(address)
    sender = SmtpEmailSender(listener.settings)
    async with running(sender):
        ctx = listener.email_context(sender, address)
        sent = await dispatch_and_send(ctx, f"dsn-{uuid.uuid4().hex[:8]}", Channel.EMAIL)
    [mail] = relay.recorder.messages
    # The returned headers as a forger would write them: the delivery id in the clear.
    forged_headers = EmailMessage()
    forged_headers["X-Herald-Delivery-Id"] = sent
    forged_headers["Message-ID"] = f"<herald.{sent}@herald.localhost>"
    other_key = signed_delivery_id(b"another install's key", sent)
    hard = {"recipient": address, "action": "failed", "status": "5.1.1", "diagnostic": "550"}
    attempts = [
        (dsn(**hard), f"bounces+{sent}@{BOUNCE_DOMAIN}"),  # the VERP address without a tag
        (dsn(**hard), f"bounces+{other_key}@{BOUNCE_DOMAIN}"),  # a tag under another key
        (dsn(**hard, original=forged_headers), f"bounces@{BOUNCE_DOMAIN}"),
        (arf(recipient=address, original=forged_headers), f"fbl@{BOUNCE_DOMAIN}"),
    ]
    for report, recipient in attempts:
        code, message = await deliver_report(port, report, recipient)
        assert code == 250 and "0 deliveries" in message, (recipient, message)
    record = await history.get(sent)
    assert record is not None and record.status is DeliveryStatus.SENT
    async with listener.sessionmaker() as session:
        assert await suppressions.suppressed(session, addresses=[address]) == {}

    # The same complaint returning the headers Herald wrote (the tagged Message-ID) matches.
    code, message = await deliver_report(
        port, arf(recipient=address, original=mail), "fbl@" + BOUNCE_DOMAIN
    )
    assert code == 250 and "1 deliveries" in message
    record = await history.get(sent)
    assert record is not None and record.status is DeliveryStatus.COMPLAINED


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
async def test_the_herald_bounces_process_applies_a_dsn(
    engine: AsyncEngine, committed_suppressions: list[str], stop: signal.Signals
) -> None:
    """Run as a process, and stopped as a terminal (SIGINT) or a container runtime (SIGTERM)
    stops it: either way it closes its listener and clients and exits 0."""
    history = PostgresHistoryStore(engine)
    record = await sent_email(history)
    address = unique_address("process")
    committed_suppressions.append(address)
    port = free_port()
    # One of the runs stops the process with SIGINT. A suite a shell started in the background
    # runs with SIGINT ignored, and a child inherits an ignored signal: give it the default.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "backend.cli", "bounces", "--port", str(port)],
            env=herald_process_env(
                HERALD_EMAIL_BOUNCE_DOMAIN=BOUNCE_DOMAIN, HERALD_BOUNCE_SECRET=BOUNCE_SECRET
            ),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
    finally:
        signal.signal(signal.SIGINT, previous)
    try:
        # A loaded machine can take many seconds to start a process: wait for the port, and
        # say so when it never opens rather than fail on the report that follows.
        wait_for_port(port, process, seconds=60)
        report = dsn(recipient=address, action="failed", status="5.1.1", diagnostic="550 gone")
        signed = signed_delivery_id(BOUNCE_SECRET.encode(), record.id)
        code, _ = await deliver_report(port, report, f"bounces+{signed}@{BOUNCE_DOMAIN}")
    finally:
        process.send_signal(stop)
        try:
            process.wait(30)
            stopped = True
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
            stopped = False

    assert stopped, f"herald bounces did not stop within 30 s of {stop.name}"
    assert process.returncode == 0, f"exit {process.returncode} after {stop.name}"
    assert code == 250
    stored = await history.get(record.id)
    assert stored is not None and stored.status is DeliveryStatus.BOUNCED
    async with create_sessionmaker(engine)() as session:
        assert address in await suppressions.suppressed(session, addresses=[address])
