"""The SMS sender against a real HTTP server playing the provider."""

from __future__ import annotations

import pytest

from backend.channels import Channel
from backend.channels.base import PermanentChannelError, Recipient, TransientChannelError
from backend.channels.sms import HttpSmsSender
from tests.channels.conftest import (
    HttpService,
    Reply,
    channel_settings,
    closed_port,
    outgoing,
    running,
)


def sms_sender(url: str, **overrides: object) -> HttpSmsSender:
    values: dict[str, object] = {
        "sms_provider_url": url,
        "sms_provider_token": "provider-token-123",
        "sms_sender": "HeraldTest",
    }
    values.update(overrides)
    return HttpSmsSender(channel_settings(**values))


async def test_sms_body_and_auth_header_arrive(http_service: HttpService) -> None:
    http_service.respond = lambda request: Reply(202, {"id": "sms-981", "status": "queued"})
    sender = sms_sender(f"{http_service.url}/v1/sms")
    async with running(sender):
        result = await sender.send(outgoing(Channel.SMS, delivery_id="d-77"))

    assert result.provider == "sms-webhook"
    assert result.provider_message_id == "sms-981"
    [request] = http_service.requests
    assert request.path == "/v1/sms"
    assert request.headers["authorization"] == "Bearer provider-token-123"
    assert request.headers["content-type"] == "application/json"
    assert request.json() == {
        "to": "+15550100",
        "from": "HeraldTest",
        "text": "Hello Ada, thanks for joining.",
        "reference": "d-77",
    }


async def test_no_token_means_no_authorization_header(http_service: HttpService) -> None:
    http_service.respond = lambda request: Reply(200, ["not", "an", "object"])
    sender = sms_sender(http_service.url, sms_provider_token=None)
    async with running(sender):
        result = await sender.send(outgoing(Channel.SMS))

    assert result.provider_message_id is None
    assert "authorization" not in http_service.requests[0].headers


@pytest.mark.parametrize("status", [500, 503, 429])
async def test_server_errors_and_throttling_are_transient(
    http_service: HttpService, status: int
) -> None:
    http_service.respond = lambda request: Reply(status, {"error": "busy"})
    sender = sms_sender(http_service.url)
    async with running(sender):
        with pytest.raises(TransientChannelError, match=str(status)) as raised:
            await sender.send(outgoing(Channel.SMS))
    assert raised.value.provider == "sms-webhook"


@pytest.mark.parametrize("status", [400, 401, 422])
async def test_client_errors_are_permanent(http_service: HttpService, status: int) -> None:
    http_service.respond = lambda request: Reply(status, {"error": "invalid number"})
    sender = sms_sender(http_service.url)
    async with running(sender):
        with pytest.raises(PermanentChannelError, match="invalid number"):
            await sender.send(outgoing(Channel.SMS))


async def test_timeout_is_transient(http_service: HttpService) -> None:
    http_service.respond = lambda request: Reply(200, {"id": "late"}, delay=1.0)
    sender = sms_sender(http_service.url, sms_timeout_seconds=0.2)
    async with running(sender):
        with pytest.raises(TransientChannelError, match="did not answer"):
            await sender.send(outgoing(Channel.SMS))


async def test_provider_down_is_transient() -> None:
    sender = sms_sender(f"http://127.0.0.1:{closed_port()}/sms")
    async with running(sender):
        with pytest.raises(TransientChannelError, match="cannot reach"):
            await sender.send(outgoing(Channel.SMS))


async def test_user_without_phone_is_permanent(http_service: HttpService) -> None:
    sender = sms_sender(http_service.url)
    async with running(sender):
        with pytest.raises(PermanentChannelError, match="phone"):
            await sender.send(outgoing(Channel.SMS, user=Recipient(id="u-1", phone=None)))
    assert http_service.requests == []
