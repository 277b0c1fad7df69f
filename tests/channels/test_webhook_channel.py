"""The webhook channel against a real HTTP server: the rendered message POSTed to the
recipient's or the event type's URL, signed per Standard Webhooks (checked with the
standardwebhooks library), and the SSRF guard."""

from __future__ import annotations

import base64
import json

import pytest
from standardwebhooks import Webhook

from backend.channels import Channel
from backend.channels.base import PermanentChannelError, TransientChannelError
from backend.channels.webhook import WebhookChannelSender
from tests.channels.conftest import HttpService, Reply, channel_settings, outgoing, running

SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()


def webhook_sender(**overrides: object) -> WebhookChannelSender:
    values: dict[str, object] = {"webhook_channel_secret": SECRET}
    values.update(overrides)
    return WebhookChannelSender(channel_settings(**values))


async def test_the_message_is_posted_signed_to_the_recipients_url(
    http_service: HttpService,
) -> None:
    http_service.respond = lambda r: Reply(204)
    sender = webhook_sender(webhook_channel_targets={"*": f"{http_service.url}/fallback"})
    message = outgoing(
        Channel.WEBHOOK, delivery_id="d-webhook-1", webhook_url=f"{http_service.url}/hooks/ada"
    )
    async with running(sender):
        result = await sender.send(message)

    assert result.provider == "webhook"
    [request] = http_service.requests
    assert (request.method, request.path) == ("POST", "/hooks/ada")
    assert request.headers["content-type"] == "application/json"
    assert request.headers["webhook-id"] == "d-webhook-1"
    # What a receiver does with the Standard Webhooks library: raises unless the signature
    # over id, timestamp and the raw body matches.
    verified = Webhook(SECRET).verify(request.body, request.headers)
    assert verified == request.json()
    document = request.json()
    assert document["id"] == "d-webhook-1"
    assert document["type"] == "notification.sent"
    assert document["data"] == {
        "delivery_id": "d-webhook-1",
        "event_id": "e-0001",
        "event_type": "user_registered",
        "user_id": "user-42",
        "subject": "Welcome, Ada!",
        "title": "Welcome!",
        "body": "Hello Ada, thanks for joining.",
        "html": "<p>Hello <b>Ada</b></p>",
        "payload": {"url": "/welcome", "n": 1},
    }


async def test_a_tampered_body_fails_verification(http_service: HttpService) -> None:
    http_service.respond = lambda r: Reply(200)
    sender = webhook_sender()
    async with running(sender):
        await sender.send(outgoing(Channel.WEBHOOK, webhook_url=http_service.url))
    [request] = http_service.requests
    tampered = request.body.replace(b"Ada", b"Eve")
    with pytest.raises(Exception, match="signature"):
        Webhook(SECRET).verify(tampered, request.headers)


async def test_without_its_own_url_the_event_types_url_then_the_default_is_used(
    http_service: HttpService,
) -> None:
    http_service.respond = lambda r: Reply(200)
    sender = webhook_sender(
        webhook_channel_targets={
            "order_shipped": f"{http_service.url}/orders",
            "*": f"{http_service.url}/everything",
        }
    )
    async with running(sender):
        await sender.send(outgoing(Channel.WEBHOOK, event_type="order_shipped"))
        await sender.send(outgoing(Channel.WEBHOOK, event_type="user_registered"))
    assert [r.path for r in http_service.requests] == ["/orders", "/everything"]


async def test_no_url_at_all_fails_permanently() -> None:
    sender = webhook_sender()
    async with running(sender):
        with pytest.raises(PermanentChannelError, match="no webhook URL"):
            await sender.send(outgoing(Channel.WEBHOOK))


async def test_without_a_secret_the_channel_is_not_configured(http_service: HttpService) -> None:
    sender = webhook_sender(webhook_channel_secret=None)
    async with running(sender):
        with pytest.raises(PermanentChannelError, match="HERALD_WEBHOOK_CHANNEL_SECRET"):
            await sender.send(outgoing(Channel.WEBHOOK, webhook_url=http_service.url))
    assert http_service.requests == []


@pytest.mark.parametrize(
    ("status", "error", "retry_after"),
    [
        (503, TransientChannelError, 12.0),  # a 503 may say when to come back too
        (429, TransientChannelError, 12.0),
        (410, PermanentChannelError, None),
        (302, PermanentChannelError, None),
    ],
)
async def test_answers_map_to_transient_or_permanent(
    http_service: HttpService, status: int, error: type[Exception], retry_after: float | None
) -> None:
    http_service.respond = lambda r: Reply(
        status, {"error": "nope"}, headers={"Retry-After": "12", "Location": "http://x/"}
    )
    sender = webhook_sender()
    async with running(sender):
        with pytest.raises(error, match=str(status)) as raised:
            await sender.send(outgoing(Channel.WEBHOOK, webhook_url=http_service.url))
    if isinstance(raised.value, TransientChannelError):
        assert raised.value.retry_after == retry_after
    assert len(http_service.requests) == 1  # no redirect followed


async def test_the_ssrf_guard_refuses_a_loopback_url_without_a_request(
    http_service: HttpService,
) -> None:
    sender = webhook_sender(environment="production", webhook_allow_private_targets=False)
    async with running(sender):
        with pytest.raises(PermanentChannelError, match=r"refused.*127\.0\.0\.1"):
            await sender.send(outgoing(Channel.WEBHOOK, webhook_url=f"{http_service.url}/x"))
    assert http_service.requests == []


def test_targets_are_read_from_the_environment_as_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "HERALD_WEBHOOK_CHANNEL_TARGETS", json.dumps({"*": "https://hooks.example/all"})
    )
    sender = webhook_sender()
    assert sender.target(outgoing(Channel.WEBHOOK)) == "https://hooks.example/all"
