"""The SMTP sender against a real SMTP server (aiosmtpd) on a free port."""

from __future__ import annotations

import asyncio
import re
from types import SimpleNamespace

import pytest

from backend.channels import Channel
from backend.channels import email as email_channel
from backend.channels.base import PermanentChannelError, Recipient, TransientChannelError
from backend.channels.email import (
    SmtpEmailSender,
    delivery_tag,
    signed_delivery_id,
    verified_delivery_id,
)
from tests.channels.conftest import (
    SMTP_PASSWORD,
    SMTP_USER,
    SmtpServer,
    TlsFiles,
    closed_port,
    outgoing,
    running,
)


async def test_email_arrives_with_subject_text_html_and_headers(smtp_server: SmtpServer) -> None:
    settings = smtp_server.settings(email_from="Herald <noreply@herald.example>")
    sender = SmtpEmailSender(settings)
    async with running(sender):
        result = await sender.send(outgoing(Channel.EMAIL, delivery_id="0f1e-77"))

    assert result.provider == "smtp"
    tag = delivery_tag(settings.bounce_key, "0f1e-77")
    assert re.fullmatch(r"[a-z2-7]{10}", tag)
    assert result.provider_message_id == f"<herald.0f1e-77.{tag}@herald.example>"
    [mail] = smtp_server.recorder.messages
    assert smtp_server.recorder.envelopes == [("noreply@herald.example", ["ada@example.org"])]
    assert mail["Subject"] == "Welcome, Ada!"
    assert mail["From"] == "Herald <noreply@herald.example>"
    assert mail["To"] == "Ada Lovelace <ada@example.org>"
    assert mail["Message-ID"] == result.provider_message_id
    assert mail["X-Herald-Delivery-Id"] == "0f1e-77"
    assert mail["Date"]
    assert mail.get_content_type() == "multipart/alternative"
    text = mail.get_body(preferencelist=("plain",))
    html = mail.get_body(preferencelist=("html",))
    assert text is not None and html is not None
    # The content, then the unsubscribe footer every non-critical email carries.
    plain = text.get_content().replace("\r\n", "\n")
    assert plain.startswith("Hello Ada, thanks for joining.\n\n--\n")
    assert html.get_content().startswith("<p>Hello <b>Ada</b></p><p ")
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    # The links are the caller's: the channel writes what the message carries.
    assert mail["List-Unsubscribe"] == "<https://herald.example/unsubscribe/t0k>"
    assert "https://herald.example/preferences/t0k" in plain


def test_a_delivery_id_is_verified_only_with_the_tag_its_key_made() -> None:
    key, other = b"k" * 32, b"o" * 32
    delivery = "6a1f3c2e-0b4d-5e6f-8a9b-0c1d2e3f4a5b"
    signed = signed_delivery_id(key, delivery)
    assert verified_delivery_id(key, signed) == delivery
    # Mail servers may fold an address's case; the tag is checked without it.
    assert verified_delivery_id(key, f"{delivery}.{delivery_tag(key, delivery).upper()}") == (
        delivery
    )
    assert verified_delivery_id(other, signed) is None  # another install's key
    assert verified_delivery_id(key, delivery) is None  # the id alone, as anyone could write
    tampered = signed_delivery_id(key, delivery).replace(delivery, delivery[:-1] + "c")
    assert verified_delivery_id(key, tampered) is None  # another delivery under this tag
    assert verified_delivery_id(key, f"{delivery}.") is None
    assert verified_delivery_id(key, "") is None and verified_delivery_id(key, None) is None


PROVIDER_HEADERS = {
    "sendgrid": "X-SMTPAPI",
    "mailgun": "X-Mailgun-Variables",
    "postmark": "X-PM-Metadata-herald_delivery_id",
    "ses": "X-SES-MESSAGE-TAGS",
}


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({}, set()),  # no provider's webhook configured: none of their headers
        (
            {"sendgrid_webhook_public_key": "a2V5", "sns_topic_arns": ["arn:aws:sns:x:1:t"]},
            {"sendgrid", "ses"},
        ),
        (
            {"mailgun_webhook_signing_key": "k", "postmark_webhook_username": "u"},
            {"mailgun", "postmark"},
        ),
        (
            {"email_provider_headers": ["postmark"], "mailgun_webhook_signing_key": "k"},
            {"postmark"},
        ),
    ],
    ids=["none", "sendgrid-and-ses", "mailgun-and-postmark", "chosen"],
)
async def test_provider_metadata_headers_only_for_the_providers_in_use(
    smtp_server: SmtpServer, overrides: dict[str, object], expected: set[str]
) -> None:
    sender = SmtpEmailSender(smtp_server.settings(**overrides))
    async with running(sender):
        await sender.send(outgoing(Channel.EMAIL, delivery_id="d-42"))

    [mail] = smtp_server.recorder.messages
    assert mail["X-Herald-Delivery-Id"] == "d-42"
    present = {provider for provider, header in PROVIDER_HEADERS.items() if mail[header]}
    assert present == expected
    if "sendgrid" in expected:
        assert mail["X-SMTPAPI"] == '{"unique_args": {"herald_delivery_id": "d-42"}}'
    if "postmark" in expected:
        assert mail["X-PM-Metadata-herald_delivery_id"] == "d-42"


async def test_message_without_unsubscribe_links_has_no_unsubscribe_header_or_footer(
    smtp_server: SmtpServer,
) -> None:
    sender = SmtpEmailSender(smtp_server.settings())
    async with running(sender):
        await sender.send(outgoing(Channel.EMAIL, unsubscribe=None))

    [mail] = smtp_server.recorder.messages
    assert mail["List-Unsubscribe"] is None
    assert mail["List-Unsubscribe-Post"] is None
    text = mail.get_body(preferencelist=("plain",))
    assert text is not None
    assert text.get_content().replace("\r\n", "\n") == "Hello Ada, thanks for joining.\n"


async def test_message_without_html_is_plain_text_and_survives_a_multiline_subject(
    smtp_server: SmtpServer,
) -> None:
    sender = SmtpEmailSender(smtp_server.settings())
    async with running(sender):
        await sender.send(outgoing(Channel.EMAIL, html=None, subject="Two\nlines "))

    [mail] = smtp_server.recorder.messages
    assert mail.get_content_type() == "text/plain"
    assert mail["Subject"] == "Two lines"
    assert (
        mail.get_content()
        .replace("\r\n", "\n")
        .startswith("Hello Ada, thanks for joining.\n\n--\n")
    )


async def test_what_is_not_ascii_or_long_arrives_as_written(smtp_server: SmtpServer) -> None:
    # Names, subject and body beyond ASCII, a subject too long for one header line: the
    # email package encodes and folds these; what Herald writes as is must not bypass it.
    subject = "Ihre Bestellung ist unterwegs, Zoë: " + "Lieferung " * 8 + "morgen früh"
    body = "Grüße, Zoë!\n" + "Ein sehr langer Satz ohne Umbruch. " * 6 + "\n"
    html = "<p>Grüße, <b>Zoë</b> · " + "lang " * 30 + "</p>"
    sender = SmtpEmailSender(smtp_server.settings(email_from="Hérald <noreply@herald.example>"))
    user = Recipient(id="u-1", email="zoe@example.org", first_name="Zoë", last_name="Ünal")
    async with running(sender):
        await sender.send(
            outgoing(
                Channel.EMAIL, user=user, subject=subject, body=body, html=html, unsubscribe=None
            )
        )

    [mail] = smtp_server.recorder.messages
    # Python's email package, folding a line before an encoded word, can leave one space
    # doubled when the header is read back; the words are all there, in order.
    assert mail["Subject"].split() == subject.split()
    assert mail["From"] == "Hérald <noreply@herald.example>"
    assert mail["To"] == "Zoë Ünal <zoe@example.org>"
    text = mail.get_body(preferencelist=("plain",))
    rich = mail.get_body(preferencelist=("html",))
    assert text is not None and rich is not None
    assert text.get_content().replace("\r\n", "\n") == body
    assert rich.get_content().replace("\r\n", "\n") == html + "\n"
    [raw] = smtp_server.recorder.raw
    raw.decode("ascii")  # every byte encoded: the headers as encoded words, the parts as QP
    long_lines = [line for line in raw.split(b"\r\n") if len(line) > 78]
    assert long_lines == []


async def test_text_that_holds_the_boundary_stays_inside_its_part(
    smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The boundary is not searched for in the parts: quoted-printable never holds "=_", so
    # a boundary that starts with it cannot occur in them, even when the text holds it.
    monkeypatch.setattr(email_channel, "secrets", SimpleNamespace(token_hex=lambda n: "0" * n))
    boundary = "=_herald_" + "0" * 8
    trap = f"--{boundary}\nContent-Type: text/plain\n\n--{boundary}--\n=_ = =3D\n--\n"
    sender = SmtpEmailSender(smtp_server.settings())
    async with running(sender):
        await sender.send(
            outgoing(Channel.EMAIL, body=trap, html=f"<pre>{trap}</pre>", unsubscribe=None)
        )

    [mail] = smtp_server.recorder.messages
    assert mail.get_boundary() == boundary
    text = mail.get_body(preferencelist=("plain",))
    rich = mail.get_body(preferencelist=("html",))
    assert text is not None and rich is not None
    assert text.get_content().replace("\r\n", "\n") == trap
    assert rich.get_content().replace("\r\n", "\n") == f"<pre>{trap}</pre>\n"
    assert len(list(mail.iter_parts())) == 2


async def test_user_without_email_is_permanent(smtp_server: SmtpServer) -> None:
    sender = SmtpEmailSender(smtp_server.settings())
    async with running(sender):
        with pytest.raises(PermanentChannelError) as raised:
            await sender.send(outgoing(Channel.EMAIL, user=Recipient(id="u-1", email=None)))
    assert raised.value.provider == "smtp"
    assert smtp_server.recorder.messages == []


@pytest.mark.parametrize("address", ["not-an-address", "a@b@c", "ada@example.org\nBcc: x@y"])
async def test_malformed_address_is_permanent(smtp_server: SmtpServer, address: str) -> None:
    sender = SmtpEmailSender(smtp_server.settings())
    async with running(sender):
        with pytest.raises(PermanentChannelError):
            await sender.send(outgoing(Channel.EMAIL, user=Recipient(id="u-1", email=address)))
    assert smtp_server.recorder.peers == set()


async def test_pool_reuses_connections(smtp_server: SmtpServer) -> None:
    sender = SmtpEmailSender(smtp_server.settings(smtp_pool_size=2))
    async with running(sender):
        for i in range(5):
            await sender.send(outgoing(Channel.EMAIL, delivery_id=f"seq-{i}"))
        assert len(smtp_server.recorder.peers) == 1

        await asyncio.gather(
            *(sender.send(outgoing(Channel.EMAIL, delivery_id=f"par-{i}")) for i in range(20))
        )

    assert len(smtp_server.recorder.messages) == 25
    assert len(smtp_server.recorder.peers) <= 2
    ids = {m["X-Herald-Delivery-Id"] for m in smtp_server.recorder.messages}
    assert ids == {f"seq-{i}" for i in range(5)} | {f"par-{i}" for i in range(20)}


async def test_4xx_reply_is_transient_and_the_connection_stays_usable(
    smtp_server: SmtpServer,
) -> None:
    sender = SmtpEmailSender(smtp_server.settings())
    async with running(sender):
        smtp_server.recorder.data_reply = "451 4.3.0 Mailbox busy, try later"
        with pytest.raises(TransientChannelError, match="451"):
            await sender.send(outgoing(Channel.EMAIL))

        smtp_server.recorder.data_reply = None
        await sender.send(outgoing(Channel.EMAIL))

    assert len(smtp_server.recorder.messages) == 1
    assert len(smtp_server.recorder.peers) == 1


@pytest.mark.parametrize(
    ("answer", "reply", "error"),
    [
        pytest.param(
            "rcpt_reply", "550 5.1.1 No such user", PermanentChannelError, id="5xx-permanent"
        ),
        # A 421 on a fresh connection (not on a pooled one the server closed).
        pytest.param(
            "mail_reply_once",
            "421 4.3.2 System not accepting messages",
            TransientChannelError,
            id="421-on-a-fresh-connection-transient",
        ),
    ],
)
async def test_a_refusal_is_permanent_or_transient_by_its_code(
    smtp_server: SmtpServer, answer: str, reply: str, error: type[Exception]
) -> None:
    assert hasattr(smtp_server.recorder, answer)
    setattr(smtp_server.recorder, answer, reply)
    sender = SmtpEmailSender(smtp_server.settings())
    async with running(sender):
        with pytest.raises(error, match=reply[:3]):
            await sender.send(outgoing(Channel.EMAIL))
    assert smtp_server.recorder.messages == []


async def test_server_down_is_transient() -> None:
    sender = SmtpEmailSender(SmtpServer().settings(smtp_port=closed_port(), smtp_timeout_seconds=2))
    async with running(sender):
        with pytest.raises(TransientChannelError):
            await sender.send(outgoing(Channel.EMAIL))


async def test_slow_server_is_transient_and_the_next_send_uses_a_fresh_connection(
    smtp_server: SmtpServer,
) -> None:
    sender = SmtpEmailSender(smtp_server.settings(smtp_timeout_seconds=0.3))
    async with running(sender):
        smtp_server.recorder.data_delay = 1.0
        with pytest.raises(TransientChannelError):
            await sender.send(outgoing(Channel.EMAIL, delivery_id="slow"))

        smtp_server.recorder.data_delay = 0.0
        await sender.send(outgoing(Channel.EMAIL, delivery_id="after"))

    # The timed-out connection was dropped, not reused out of step with the server.
    assert [m["X-Herald-Delivery-Id"] for m in smtp_server.recorder.messages] == ["after"]
    assert len(smtp_server.recorder.peers) == 2


async def test_server_restart_next_send_reconnects(smtp_server: SmtpServer) -> None:
    sender = SmtpEmailSender(smtp_server.settings(smtp_timeout_seconds=2))
    async with running(sender):
        await sender.send(outgoing(Channel.EMAIL, delivery_id="before"))

        await asyncio.to_thread(smtp_server.stop)
        with pytest.raises(TransientChannelError):
            await sender.send(outgoing(Channel.EMAIL, delivery_id="while-down"))

        await asyncio.to_thread(smtp_server.start)
        await sender.send(outgoing(Channel.EMAIL, delivery_id="after"))

    assert [m["X-Herald-Delivery-Id"] for m in smtp_server.recorder.messages] == [
        "before",
        "after",
    ]


async def test_idle_connection_dropped_by_a_restart_is_replaced_transparently(
    smtp_server: SmtpServer,
) -> None:
    sender = SmtpEmailSender(smtp_server.settings(smtp_timeout_seconds=2))
    async with running(sender):
        await sender.send(outgoing(Channel.EMAIL, delivery_id="before"))
        await asyncio.to_thread(smtp_server.stop)
        await asyncio.to_thread(smtp_server.start)
        # The pooled connection died with the old server; no error reaches the caller.
        await sender.send(outgoing(Channel.EMAIL, delivery_id="after"))

    assert [m["X-Herald-Delivery-Id"] for m in smtp_server.recorder.messages] == [
        "before",
        "after",
    ]
    assert len(smtp_server.recorder.peers) == 2


async def test_pooled_connection_answered_421_is_replaced_transparently(
    smtp_server: SmtpServer,
) -> None:
    sender = SmtpEmailSender(smtp_server.settings())
    async with running(sender):
        await sender.send(outgoing(Channel.EMAIL, delivery_id="first"))
        # How a relay that timed out an idle client answers its next command.
        smtp_server.recorder.mail_reply_once = "421 4.4.2 Idle too long, closing"
        await sender.send(outgoing(Channel.EMAIL, delivery_id="second"))

    assert [m["X-Herald-Delivery-Id"] for m in smtp_server.recorder.messages] == [
        "first",
        "second",
    ]
    assert len(smtp_server.recorder.peers) == 2


async def test_starttls_with_login(tls_files: TlsFiles) -> None:
    server = SmtpServer(
        tls_context=tls_files.server_context(),
        require_starttls=True,
        with_auth=True,
        auth_require_tls=True,
    )
    server.start()
    try:
        settings = server.settings(
            smtp_tls="starttls", smtp_username=SMTP_USER, smtp_password=SMTP_PASSWORD
        )
        sender = SmtpEmailSender(settings, tls_context=tls_files.client_context())
        async with running(sender):
            await sender.send(outgoing(Channel.EMAIL))

        wrong = SmtpEmailSender(
            server.settings(
                smtp_tls="starttls", smtp_username=SMTP_USER, smtp_password="wrong-password"
            ),
            tls_context=tls_files.client_context(),
        )
        async with running(wrong):
            with pytest.raises(PermanentChannelError, match="535"):
                await wrong.send(outgoing(Channel.EMAIL))
    finally:
        await asyncio.to_thread(server.stop)

    assert server.recorder.logins == [SMTP_USER]
    assert len(server.recorder.messages) == 1


async def test_ssl_verifies_the_server_certificate(tls_files: TlsFiles) -> None:
    server = SmtpServer(ssl_context=tls_files.server_context())
    server.start()
    try:
        trusting = SmtpEmailSender(
            server.settings(smtp_tls="ssl"), tls_context=tls_files.client_context()
        )
        async with running(trusting):
            await trusting.send(outgoing(Channel.EMAIL))

        # The system trust store does not know the self-signed certificate.
        untrusting = SmtpEmailSender(server.settings(smtp_tls="ssl", smtp_timeout_seconds=2))
        async with running(untrusting):
            with pytest.raises(TransientChannelError, match="certificate"):
                await untrusting.send(outgoing(Channel.EMAIL))
    finally:
        await asyncio.to_thread(server.stop)

    assert len(server.recorder.messages) == 1
