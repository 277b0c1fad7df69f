"""SMS through an HTTP provider that takes one JSON POST per message."""

from __future__ import annotations

from typing import Any

import httpx

from backend.channels import Channel
from backend.channels.base import (
    HttpProviderSender,
    OutgoingMessage,
    PermanentChannelError,
    SendResult,
    TransientChannelError,
)
from backend.config import Settings

PROVIDER = "sms-webhook"
# 408 and 429 are the provider saying "not now": the same request can succeed later.
_RETRYABLE_CLIENT_ERRORS = frozenset({408, 429})


class HttpSmsSender(HttpProviderSender):
    """Posts ``{"to", "from", "text", "reference"}`` to the SMS provider's webhook."""

    channel: Channel = Channel.SMS

    def __init__(self, settings: Settings) -> None:
        # Parsed here so a malformed URL stops the worker at start, not every send.
        self._url = httpx.URL(settings.sms_provider_url)
        self._token = (
            settings.sms_provider_token.get_secret_value() if settings.sms_provider_token else None
        )
        self._sender = settings.sms_sender
        self._timeout = settings.sms_timeout_seconds

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token}"} if self._token else {}

    async def send(self, message: OutgoingMessage) -> SendResult:
        """Send ``message.body`` to the user's phone number."""
        client = self._started_client()
        phone = message.user.phone
        if not phone:
            raise PermanentChannelError("the user has no phone number", provider=PROVIDER)
        if not message.body:
            raise PermanentChannelError("the SMS has no text", provider=PROVIDER)
        payload = {
            "to": phone,
            "from": self._sender,
            "text": message.body,
            "reference": message.delivery_id,
        }
        with self._unanswered_is_transient("the SMS provider", provider=PROVIDER):
            response = await client.post(self._url, json=payload)
        status = response.status_code
        if response.is_success:
            return SendResult(provider=PROVIDER, provider_message_id=_message_id(response))
        detail = f"the SMS provider answered {status}: {response.text[:300]}"
        if status >= 500 or status in _RETRYABLE_CLIENT_ERRORS:
            raise TransientChannelError(detail, provider=PROVIDER)
        raise PermanentChannelError(detail, provider=PROVIDER)


def _message_id(response: httpx.Response) -> str | None:
    try:
        body: Any = response.json()
    except ValueError:
        return None
    if isinstance(body, dict) and body.get("id") is not None:
        return str(body["id"])
    return None
