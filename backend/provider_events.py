"""Inbound email provider events: bounces and complaints (backend.services.email_feedback).

- ``POST /providers/email/ses/events``: Amazon SES notifications through an SNS HTTPS
  subscription (SNS-signed; subscription confirmations are confirmed).
- ``POST /providers/email/sendgrid/events``: the SendGrid Event Webhook (signed).
- ``POST /providers/email/postmark/events``: Postmark bounce and spam-complaint webhooks (HTTP
  basic auth in the webhook URL; Postmark signs nothing).
- ``POST /providers/email/mailgun/events``: Mailgun webhooks (signed, each token once).

A request that fails its provider's check is answered 401 with
``{"error": {"code": "UNAUTHENTICATED", "message": ...}}`` and changes nothing; a malformed
body 400 (``VALIDATION``); otherwise 200 with what was received, matched and suppressed.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from backend.errors import HeraldError, UnauthenticatedError, UnavailableError, ValidationError
from backend.schema.context import Services
from backend.services.email_feedback import (
    Feedback,
    FeedbackRecorder,
    mailgun,
    postmark,
    sendgrid,
    ses,
)

log = logging.getLogger(__name__)
router = APIRouter(include_in_schema=False)
MAX_BODY_BYTES = 2_000_000
_STATUS = {UnauthenticatedError: 401, ValidationError: 400, UnavailableError: 503}


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def _recorder(request: Request) -> FeedbackRecorder:
    """A recorder on the app's clients. Made per request (reports are few): it then always
    uses the services' current session factory."""
    services = _services(request)
    clients = services.clients
    return FeedbackRecorder.announcing(
        sessionmaker=services.sessionmaker,
        history=clients.history,
        redis=clients.redis,
        broker=clients.broker,
        webhook_cache_seconds=0,
    )


def _sns_verifier(request: Request) -> ses.SnsVerifier:
    verifier: ses.SnsVerifier | None = getattr(request.app.state, "sns_verifier", None)
    if verifier is None:
        verifier = ses.SnsVerifier(_services(request).settings)
        request.app.state.sns_verifier = verifier
    return verifier


def _error(exc: HeraldError) -> JSONResponse:
    status = next((code for kind, code in _STATUS.items() if isinstance(exc, kind)), 500)
    return JSONResponse({"error": {"code": exc.code, "message": exc.message}}, status_code=status)


async def _body(request: Request) -> bytes:
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        raise ValidationError(f"The body is larger than {MAX_BODY_BYTES} bytes")
    return body


async def _handle(
    request: Request, provider: str, read: Callable[[bytes], Awaitable[list[Feedback] | None]]
) -> JSONResponse:
    try:
        feedback = await read(await _body(request))
        if feedback is None:  # answered without feedback (an SNS subscription confirmed)
            return JSONResponse({"confirmed": True})
        summary = await _recorder(request).record(feedback)
    except HeraldError as exc:
        if isinstance(exc, UnauthenticatedError):
            log.warning("refused %s provider events: %s", provider, exc.message)
        return _error(exc)
    return JSONResponse(summary.to_json())


@router.post("/providers/email/ses/events")
async def ses_events(request: Request) -> JSONResponse:
    async def read(body: bytes) -> list[Feedback] | None:
        message = ses.parse_envelope(body)
        verifier = _sns_verifier(request)
        await verifier.verify(message)
        if message.type == "SubscriptionConfirmation":
            await verifier.confirm_subscription(message)
            return None
        if message.type != "Notification":
            return []  # UnsubscribeConfirmation: nothing to do
        return ses.parse_notification(message)

    return await _handle(request, "ses", read)


@router.post("/providers/email/sendgrid/events")
async def sendgrid_events(request: Request) -> JSONResponse:
    settings = _services(request).settings

    async def read(body: bytes) -> list[Feedback]:
        sendgrid.verify(
            public_key=settings.sendgrid_webhook_public_key,
            signature=request.headers.get(sendgrid.SIGNATURE_HEADER),
            timestamp=request.headers.get(sendgrid.TIMESTAMP_HEADER),
            body=body,
            max_age_seconds=settings.email_feedback_max_age_seconds,
        )
        return sendgrid.parse(body)

    return await _handle(request, "sendgrid", read)


@router.post("/providers/email/postmark/events")
async def postmark_events(request: Request) -> JSONResponse:
    settings = _services(request).settings
    password = settings.postmark_webhook_password

    async def read(body: bytes) -> list[Feedback]:
        postmark.verify(
            authorization=request.headers.get("authorization"),
            username=settings.postmark_webhook_username,
            password=password.get_secret_value() if password else None,
        )
        return postmark.parse(body)

    return await _handle(request, "postmark", read)


@router.post("/providers/email/mailgun/events")
async def mailgun_events(request: Request) -> JSONResponse:
    services = _services(request)
    settings = services.settings
    key = settings.mailgun_webhook_signing_key

    async def read(body: bytes) -> list[Feedback]:
        payload = mailgun.load(body)
        await mailgun.verify(
            payload,
            signing_key=key.get_secret_value() if key else None,
            redis=services.clients.redis,
            max_age_seconds=settings.email_feedback_max_age_seconds,
        )
        return mailgun.parse(payload)

    return await _handle(request, "mailgun", read)
