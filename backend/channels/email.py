"""Email over SMTP, through a small pool of reused connections.

A connection is opened on first need, returned to the pool after each message and reused by
the next send; one that broke (server restart, idle timeout, a timed-out command) is dropped
and replaced. Concurrent sends each hold one connection, so at most ``smtp_pool_size``
messages are in flight and at most that many connections are open.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import json
import logging
import re
import secrets
import ssl
from email.errors import HeaderParseError
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate, parseaddr
from html import escape
from typing import Any

import aiosmtplib

from backend.channels import Channel
from backend.channels.base import (
    ChannelError,
    OutgoingMessage,
    PermanentChannelError,
    SendResult,
    TransientChannelError,
    UnsubscribeLinks,
)
from backend.config import Settings, SmtpTls

logger = logging.getLogger(__name__)

PROVIDER = "smtp"
DELIVERY_ID_HEADER = "X-Herald-Delivery-Id"
# The delivery id again, where relays that are email providers echo it in their bounce and
# complaint events (backend.services.email_feedback): SendGrid's custom arguments, Mailgun's
# user variables, Postmark's metadata, SES's message tags (event publishing); SES also echoes
# the Message-ID and, optionally, the headers.
DELIVERY_ID_KEY = "herald_delivery_id"
# Characters RFC 5322 allows in a Message-ID's left part that are also safe in logs and URLs.
_MESSAGE_ID_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def delivery_tag(key: bytes, delivery_id: str) -> str:
    """What proves that Herald wrote ``delivery_id`` into an address or a Message-ID: 10
    lower-case base32 characters (50 bits) of its HMAC-SHA256 under ``key``. Lower case, since
    mail servers may fold the case of an address's local part."""
    digest = hmac.new(key, delivery_id.encode(), hashlib.sha256).digest()
    return base64.b32encode(digest[:10]).decode().lower()[:10]


def signed_delivery_id(key: bytes, delivery_id: str) -> str:
    """``<delivery id>.<tag>``, as VERP addresses and Message-IDs carry it."""
    return f"{delivery_id}.{delivery_tag(key, delivery_id)}"


def verified_delivery_id(key: bytes, value: str | None) -> str | None:
    """The delivery id of a ``<delivery id>.<tag>`` whose tag checks out under ``key``; None
    for anything else (no tag, a wrong one: a report anyone could have written)."""
    if not value:
        return None
    delivery_id, dot, tag = value.strip().rpartition(".")
    if not dot or not delivery_id:
        return None
    return delivery_id if hmac.compare_digest(tag.lower(), delivery_tag(key, delivery_id)) else None


def provider_headers(settings: Settings) -> frozenset[str]:
    """The providers whose metadata headers outgoing email carries (for their event webhooks
    to echo the delivery id back): ``email_provider_headers``, or those configured."""
    if settings.email_provider_headers is not None:
        return frozenset(settings.email_provider_headers)
    configured = {
        "ses": bool(settings.sns_topic_arns),
        "sendgrid": bool(settings.sendgrid_webhook_public_key),
        "mailgun": settings.mailgun_webhook_signing_key is not None,
        "postmark": bool(settings.postmark_webhook_username),
    }
    return frozenset(name for name, on in configured.items() if on)


class _StaleConnectionError(Exception):
    """A pooled connection turned out dead before the server took the message."""


class SmtpEmailSender:
    """Sends :class:`OutgoingMessage` as email through a pool of SMTP connections.

    ``tls_context`` overrides the system trust store, e.g. for a relay with a private CA.
    """

    channel: Channel = Channel.EMAIL

    def __init__(self, settings: Settings, *, tls_context: ssl.SSLContext | None = None) -> None:
        self._host = settings.smtp_host
        self._port = settings.smtp_port
        self._username = settings.smtp_username
        self._password = (
            settings.smtp_password.get_secret_value() if settings.smtp_password else None
        )
        self._tls = settings.smtp_tls
        self._timeout = settings.smtp_timeout_seconds
        self._tls_context = tls_context
        self._from = settings.email_from
        self._envelope_from = parseaddr(settings.email_from)[1]
        self._bounce_domain = settings.email_bounce_domain
        self._bounce_local = settings.email_bounce_local_part
        self._bounce_key = settings.bounce_key
        domain = self._envelope_from.rpartition("@")[2]
        self._message_id_domain = domain or "herald.localhost"
        self._provider_headers = provider_headers(settings)
        # The From header, parsed once: it is the same on every message.
        self._from_header: Any = None
        self._slots = asyncio.Semaphore(settings.smtp_pool_size)
        self._idle: list[aiosmtplib.SMTP] = []
        self._closed = False

    async def start(self) -> None:
        """Make the sender usable. Connections open on first send, not here, so a worker
        starts (and its other channels work) while the SMTP server is down."""
        self._closed = False

    async def close(self) -> None:
        """QUIT the idle connections; connections still sending are closed when they finish."""
        self._closed = True
        idle, self._idle = self._idle, []
        await asyncio.gather(*(self._quit(smtp) for smtp in idle))

    async def send(self, message: OutgoingMessage) -> SendResult:
        """Send ``message`` to its user's email address."""
        if self._closed:
            raise RuntimeError("the SMTP sender is closed")
        recipient = message.user.email
        if not recipient:
            raise PermanentChannelError("the user has no email address", provider=PROVIDER)
        email = self.build_email(message)
        message_id = self.message_id(message.delivery_id)
        sender = self.envelope_sender(message.delivery_id)
        async with self._slots:
            smtp = self._take_idle()
            if smtp is not None:
                try:
                    await self._transmit(smtp, email, sender, recipient, reused=True)
                except _StaleConnectionError:
                    logger.info("pooled SMTP connection was dead; reconnecting")
                else:
                    return SendResult(provider=PROVIDER, provider_message_id=message_id)
            smtp = await self._connect()
            await self._transmit(smtp, email, sender, recipient, reused=False)
        return SendResult(provider=PROVIDER, provider_message_id=message_id)

    def build_email(self, message: OutgoingMessage) -> EmailMessage:
        """The MIME message for ``message``: text, plus an HTML alternative when there is one.

        The email package parses every header value it is given and every value it writes
        back, and picks a multipart boundary by searching the parts for it: over half of a
        worker's CPU per email went there. So what Herald writes itself goes in as written
        (``_Verbatim``) when it is plain ASCII on one short line, and through the package's
        parser (encoded words, folding) otherwise; both parts are quoted-printable, which
        never holds ``=_``, so a boundary starting so needs no search.
        """
        user = message.user
        email = EmailMessage()
        try:
            to = Address(
                display_name=f"{user.first_name} {user.last_name}".strip(),
                addr_spec=user.email or "",
            )
            if self._from_header is None:
                self._from_header = _parsed_once(email, "From", self._from)
            email.set_raw("From", self._from_header)
            _set(email, "To", str(to), fallback=to)
            # A rendered subject can carry line breaks, which a header cannot.
            _set(email, "Subject", " ".join((message.subject or "").split()))
            _set(email, "Date", formatdate(usegmt=True))
            delivery_id = message.delivery_id
            # One token that folding cannot shorten: a line of its own length.
            _set(email, "Message-ID", self.message_id(delivery_id), limit=_MAX_LINE)
            _set(email, DELIVERY_ID_HEADER, delivery_id)
            if "sendgrid" in self._provider_headers:
                unique_args = json.dumps({"unique_args": {DELIVERY_ID_KEY: delivery_id}})
                _set(email, "X-SMTPAPI", unique_args, limit=_MAX_LINE)
            if "mailgun" in self._provider_headers:
                variables = json.dumps({DELIVERY_ID_KEY: delivery_id})
                _set(email, "X-Mailgun-Variables", variables, limit=_MAX_LINE)
            if "postmark" in self._provider_headers:
                _set(email, f"X-PM-Metadata-{DELIVERY_ID_KEY}", delivery_id)
            if "ses" in self._provider_headers:
                _set(email, "X-SES-MESSAGE-TAGS", f"{DELIVERY_ID_KEY}={delivery_id}")
        except (ValueError, IndexError, HeaderParseError) as exc:
            # The email package refuses malformed addresses and header values this way.
            raise PermanentChannelError(
                f"cannot build the email: {exc}", provider=PROVIDER
            ) from exc
        body, html = message.body or "", message.html
        links = message.unsubscribe
        if links is not None:
            # RFC 8058 one-click unsubscribe, and the preference page in the footer.
            _set_verbatim(email, "List-Unsubscribe", links.list_unsubscribe())
            _set(email, "List-Unsubscribe-Post", links.one_click_body)
            body, html = _with_footer(body, html, links)
        _set_verbatim(email, "MIME-Version", "1.0")
        if not html:
            _fill_text(email, body, "plain")
            return email
        boundary = f"=_herald_{secrets.token_hex(8)}"
        _set_verbatim(email, "Content-Type", f'multipart/alternative; boundary="{boundary}"')
        email.set_payload([_text_part(body, "plain"), _text_part(html, "html")])
        return email

    def _signed(self, delivery_id: str) -> str:
        local = _MESSAGE_ID_UNSAFE.sub("-", delivery_id) or "delivery"
        return signed_delivery_id(self._bounce_key, local)

    def message_id(self, delivery_id: str) -> str:
        """The Message-ID for a delivery (``<herald.<delivery id>.<tag>@domain>``): stable
        across retries, so a receiving server and the user's mail client can recognise a
        resent message as the same one; the tag lets a complaint report that returns it be
        matched to the delivery (``verified_delivery_id``)."""
        return f"<herald.{self._signed(delivery_id)}@{self._message_id_domain}>"

    def envelope_sender(self, delivery_id: str) -> str:
        """The envelope sender (Return-Path), where bounces go: with a bounce domain, a VERP
        address naming the delivery (``bounces+<delivery id>.<tag>@<bounce domain>``) that
        ``herald bounces`` takes apart; else the From address."""
        if not self._bounce_domain:
            return self._envelope_from
        return f"{self._bounce_local}+{self._signed(delivery_id)}@{self._bounce_domain}"

    def _take_idle(self) -> aiosmtplib.SMTP | None:
        while self._idle:
            smtp = self._idle.pop()
            if smtp.is_connected:
                return smtp
            smtp.close()
        return None

    async def _connect(self) -> aiosmtplib.SMTP:
        smtp = aiosmtplib.SMTP(
            hostname=self._host,
            port=self._port,
            username=self._username,
            password=self._password,
            timeout=self._timeout,
            use_tls=self._tls is SmtpTls.SSL,
            # False, not aiosmtplib's "upgrade when offered": the setting is the operator's
            # decision, and an opportunistic upgrade would fail on a relay with a bad cert.
            start_tls=self._tls is SmtpTls.STARTTLS,
            tls_context=self._tls_context,
        )
        try:
            await smtp.connect()
        except (aiosmtplib.SMTPException, OSError) as exc:
            smtp.close()
            raise _channel_error(exc, f"cannot connect to {self._host}:{self._port}") from exc
        return smtp

    async def _transmit(
        self,
        smtp: aiosmtplib.SMTP,
        email: EmailMessage,
        sender: str,
        recipient: str,
        *,
        reused: bool,
    ) -> None:
        try:
            await smtp.send_message(email, sender=sender, recipients=[recipient])
        except aiosmtplib.SMTPException as exc:
            # After a refusal aiosmtplib has RSET the envelope: the connection stays good.
            refused = isinstance(
                exc, aiosmtplib.SMTPResponseException | aiosmtplib.SMTPRecipientsRefused
            )
            if refused and smtp.is_connected and _reply_code(exc) != 421:
                await self._release(smtp)
            else:
                smtp.close()
            if reused and _is_stale(exc):
                raise _StaleConnectionError from exc
            raise _channel_error(exc, "the SMTP server did not take the message") from exc
        except ValueError as exc:
            # aiosmtplib's address check, before anything reaches the server.
            await self._release(smtp)
            raise PermanentChannelError(f"invalid address: {exc}", provider=PROVIDER) from exc
        except BaseException:
            # Cancelled or unexpected mid-transaction: the session state is unknown.
            smtp.close()
            raise
        await self._release(smtp)

    async def _release(self, smtp: aiosmtplib.SMTP) -> None:
        if self._closed:
            await self._quit(smtp)
        elif smtp.is_connected:
            self._idle.append(smtp)

    async def _quit(self, smtp: aiosmtplib.SMTP) -> None:
        try:
            await smtp.quit(timeout=self._timeout)
        except (aiosmtplib.SMTPException, OSError):
            smtp.close()


# RFC 5322: a header line SHOULD stay within 78 characters and MUST within 998.
_FOLD_AT = 78
_MAX_LINE = 998


def _set(
    email: EmailMessage, name: str, value: str, *, fallback: Any = None, limit: int = _FOLD_AT
) -> None:
    """Set header ``name``: as written when ``value`` is printable ASCII that fits one line
    of ``limit`` characters (the email package would parse it only to write it back the
    same), else through the package, given ``fallback`` if set (it encodes what is not ASCII
    and folds what is long)."""
    if _fits(name, value, limit):
        _set_verbatim(email, name, value)
    else:
        email[name] = value if fallback is None else fallback


def _fits(name: str, value: str, limit: int) -> bool:
    """Whether ``value`` is printable ASCII that header ``name`` holds on one line of at most
    ``limit`` characters: nothing the email package would encode or fold."""
    return value.isascii() and value.isprintable() and len(name) + 2 + len(value) <= limit


def _set_verbatim(email: EmailMessage, name: str, value: str) -> None:
    email.set_raw(name, _Verbatim(name, value))


def _parsed_once(email: EmailMessage, name: str, value: str) -> Any:
    """Header ``name`` as the email package parses ``value``, to be set on every message:
    its normalised text verbatim when that fits one line."""
    _, header = email.policy.header_store_parse(name, value)
    text = str(header)
    if _fits(name, text, _FOLD_AT):
        return _Verbatim(name, text)
    return header


def _fill_text(part: EmailMessage, text: str, subtype: str) -> None:
    """Make ``part`` a UTF-8 ``text/<subtype>`` part holding ``text``, quoted-printable (lines
    of at most 76 characters whatever the text's, and no ``=_`` in it), ending with a line
    break as the email package's own ``set_content`` ends it."""
    if not text.endswith("\n"):
        text += "\n"
    _set_verbatim(part, "Content-Type", f'text/{subtype}; charset="utf-8"')
    _set_verbatim(part, "Content-Transfer-Encoding", "quoted-printable")
    part.set_payload(binascii.b2a_qp(text.encode(), istext=True).decode("ascii"))


def _text_part(text: str, subtype: str) -> EmailMessage:
    part = EmailMessage()
    _fill_text(part, text, subtype)
    return part


class _Verbatim(str):
    """A header value written as is. The email package folds a long header without spaces
    into RFC 2047 encoded words, and a URI inside those is one no mail client finds."""

    name: str

    def __new__(cls, name: str, value: str) -> _Verbatim:
        header = super().__new__(cls, value)
        header.name = name
        return header

    def fold(self, *, policy: Any) -> str:
        return f"{self.name}: {self}{policy.linesep}"


def _with_footer(body: str, html: str | None, links: UnsubscribeLinks) -> tuple[str, str | None]:
    text = f"{body.rstrip()}\n\n--\nChoose which notifications you get: {links.page_url}\n"
    if html is None:
        return text, None
    footer = (
        '<p style="margin-top:2em;font-size:12px;color:#666">'
        f'<a href="{escape(links.page_url)}">Choose which notifications you get</a> · '
        f'<a href="{escape(links.one_click_url)}">Unsubscribe</a></p>'
    )
    closing = html.lower().rfind("</body>")
    if closing == -1:
        return text, html + footer
    return text, html[:closing] + footer + html[closing:]


def _reply_code(exc: BaseException) -> int | None:
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        return exc.recipients[0].code if exc.recipients else None
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return exc.code
    return None


def _is_stale(exc: BaseException) -> bool:
    """Whether a reused connection failed because it was dead, not because of this message.

    A server that drops idle clients either closes the socket or answers the next command
    with 421. A disconnect right after the final "." could mean the message was taken and is
    now sent twice; that window is tiny and a duplicate beats a lost notification.
    """
    return isinstance(exc, aiosmtplib.SMTPServerDisconnected) or _reply_code(exc) == 421


def _channel_error(exc: BaseException, context: str) -> ChannelError:
    code = _reply_code(exc)
    detail = f"{context}: {exc}"
    if code is not None and 500 <= code < 600:
        return PermanentChannelError(detail, provider=PROVIDER)
    if isinstance(exc, aiosmtplib.SMTPNotSupported):
        # STARTTLS, AUTH or SMTPUTF8 missing on the server: configuration, not a hiccup.
        return PermanentChannelError(detail, provider=PROVIDER)
    return TransientChannelError(detail, provider=PROVIDER)
