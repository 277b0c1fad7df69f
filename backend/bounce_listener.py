"""``herald bounces``: an SMTP listener for the bounce domain.

Mail sent through a plain SMTP relay has a VERP envelope sender when
``HERALD_EMAIL_BOUNCE_DOMAIN`` is set (``bounces+<delivery id>.<tag>@<bounce domain>``, the
tag an HMAC of the id, so a forged report cannot name a delivery); point the
bounce domain's MX at this process and the delivery status notifications (RFC 3464) and
complaint reports (ARF) it receives are applied like the providers' webhooks
(``backend.services.email_feedback``).

Only recipients at the bounce domain are taken. A message that is not a report (an
auto-reply) is accepted and dropped: refusing it would only send yet another bounce. A
report that cannot be recorded right now (a store down) is refused with 451, so the sending
server tries again later.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from aiosmtpd.smtp import SMTP, Envelope, Session
from redis.asyncio import Redis

from backend.broker import Broker
from backend.config import Settings
from backend.db.history.factory import create_history_store
from backend.db.session import create_engine, create_sessionmaker
from backend.errors import UnavailableError, ValidationError
from backend.services.email_feedback import FeedbackRecorder, dsn

log = logging.getLogger(__name__)


@dataclass
class BounceHandler:
    """aiosmtpd handler: RCPT at the bounce domain only; DATA parsed and recorded."""

    recorder: FeedbackRecorder
    domain: str
    key: bytes  # Settings.bounce_key: what the delivery tags are checked with

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address.rpartition("@")[2].lower() != self.domain.lower():
            return "550 5.1.1 Not a bounce address of this server"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or envelope.content or b""
        if isinstance(raw, str):
            raw = raw.encode()
        try:
            feedback = dsn.parse(raw, key=self.key, envelope_recipients=list(envelope.rcpt_tos))
        except ValidationError as exc:
            log.info("dropped a message to the bounce domain that is not a report: %s", exc)
            return "250 OK (not a report; dropped)"
        try:
            summary = await self.recorder.record(feedback)
        except (UnavailableError, OSError) as exc:
            log.warning("could not record a bounce report: %s", exc)
            return "451 4.3.0 Cannot record the report now; try again later"
        except Exception:
            log.exception("recording a bounce report failed")
            return "451 4.3.0 Cannot record the report now; try again later"
        return f"250 OK ({summary.received} reports, {summary.matched} deliveries)"


async def start_listener(
    settings: Settings, recorder: FeedbackRecorder, *, host: str, port: int
) -> asyncio.Server:
    """Listen on ``host``:``port`` in the running loop (the recorder's clients live there)."""
    domain = settings.email_bounce_domain
    if not domain:
        raise ValueError("herald bounces needs HERALD_EMAIL_BOUNCE_DOMAIN")
    handler = BounceHandler(recorder, domain, settings.bounce_key)
    loop = asyncio.get_running_loop()
    return await loop.create_server(
        lambda: SMTP(
            handler,
            data_size_limit=settings.bounce_max_message_bytes,
            hostname=domain,
            ident="Herald bounces",
        ),
        host=host,
        port=port,
    )


async def serve(settings: Settings, *, host: str, port: int) -> None:
    """Run the listener with its own clients until cancelled."""
    engine = create_engine(settings)
    sessionmaker = create_sessionmaker(engine)
    redis = Redis.from_url(settings.redis_url, socket_timeout=5, socket_connect_timeout=2)
    broker = Broker.from_settings(settings)
    await broker.start()
    history = create_history_store(settings, engine)
    await history.start()
    recorder = FeedbackRecorder.announcing(
        sessionmaker=sessionmaker,
        history=history,
        redis=redis,
        broker=broker,
        webhook_cache_seconds=settings.webhook_cache_seconds,
    )
    server = await start_listener(settings, recorder, host=host, port=port)
    log.info("herald bounces listening on %s:%d for @%s", host, port, settings.email_bounce_domain)
    try:
        await server.serve_forever()
    finally:
        server.close()
        await history.close()
        await broker.close()
        await redis.aclose()
        await engine.dispose()
