"""The webhook channel: the rendered message POSTed to a URL, signed as status webhooks are.

The URL is the recipient's own (its ``WEBHOOK`` address) or else its event type's
(``HERALD_WEBHOOK_CHANNEL_TARGETS``: ``{"<event type>": "<url>", "*": "<any other>"}``). The
request follows Standard Webhooks like the status webhooks (``backend.channels.outbound``):

    POST <url>
    Content-Type: application/json
    webhook-id: <the delivery id: the same on every retry, for de-duplication>
    webhook-timestamp: <unix seconds of this attempt>
    webhook-signature: v1,<base64 HMAC-SHA256(key, "<id>.<timestamp>.<raw body>")>

    {"id": "<delivery id>", "type": "notification.sent", "created_at": "<ISO 8601>",
     "data": {"delivery_id", "event_id", "event_type", "user_id", "subject", "title",
              "body", "html", "payload"}}

keyed with ``HERALD_WEBHOOK_CHANNEL_SECRET``. Unless private targets are allowed (the default
outside production), the host must resolve to global addresses only and the request goes to
the very address checked (the status webhooks' SSRF guard). Redirects are not followed.

Any 2xx is success. A 429, a 5xx, a 408, a timeout or a connection error is transient
(retried with the delivery's backoff, a 429's ``Retry-After`` respected); any other answer,
and a refused target, is permanent.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

import httpx

from backend.channels import Channel, outbound
from backend.channels.base import (
    HttpProviderSender,
    OutgoingMessage,
    PermanentChannelError,
    SendResult,
    TransientChannelError,
)
from backend.config import Settings

PROVIDER = "webhook"
EVENT_TYPE = "notification.sent"
_TRANSIENT = frozenset({408, 425, 429})


class WebhookChannelSender(HttpProviderSender):
    """POSTs each message to its recipient's or its event type's URL, signed."""

    channel: Channel = Channel.WEBHOOK

    def __init__(self, settings: Settings) -> None:
        self._targets = dict(settings.webhook_channel_targets)
        secret = settings.webhook_channel_secret
        self._key = outbound.signing_key(secret.get_secret_value()) if secret else None
        self._timeout = settings.webhook_timeout_seconds
        self._guard = not settings.webhook_private_targets_allowed

    def _headers(self) -> dict[str, str]:
        return {"User-Agent": "Herald-Webhooks/1"}

    def target(self, message: OutgoingMessage) -> str | None:
        """Where ``message`` goes: the recipient's URL, else its event type's, else ``*``'s."""
        return (
            message.webhook_url or self._targets.get(message.event_type) or self._targets.get("*")
        )

    async def send(self, message: OutgoingMessage) -> SendResult:
        client = self._started_client()
        if self._key is None:
            raise PermanentChannelError(
                "the webhook channel is not configured: set HERALD_WEBHOOK_CHANNEL_SECRET",
                provider=PROVIDER,
            )
        url = self.target(message)
        if not url:
            raise PermanentChannelError(
                f"no webhook URL for the recipient nor for event type '{message.event_type}'",
                provider=PROVIDER,
            )
        body = request_body(message)
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            outbound.ID_HEADER: message.delivery_id,
            outbound.TIMESTAMP_HEADER: str(timestamp),
            outbound.SIGNATURE_HEADER: outbound.sign(
                self._key, body, message_id=message.delivery_id, timestamp=timestamp
            ),
        }
        extensions: dict[str, Any] = {}
        try:
            with self._unanswered_is_transient("the webhook", provider=PROVIDER):
                if self._guard:
                    url, host, extensions = await outbound.pinned_target(url)
                    headers.update(host)
                response = await client.post(
                    url,
                    content=body,
                    headers=headers,
                    follow_redirects=False,
                    extensions=extensions,
                )
        except outbound.TargetRefused as exc:
            raise PermanentChannelError(
                f"the webhook URL is refused: {exc}", provider=PROVIDER
            ) from exc
        except (OSError, UnicodeError) as exc:
            raise TransientChannelError(
                f"cannot resolve the webhook's host: {exc!r}"[:300], provider=PROVIDER
            ) from exc
        status = response.status_code
        if response.is_success:
            return SendResult(provider=PROVIDER)
        detail = f"the webhook answered {status}: {response.text[:200]}"
        if status >= 500 or status in _TRANSIENT:
            raise TransientChannelError(
                detail, provider=PROVIDER, retry_after=_retry_after(response)
            )
        raise PermanentChannelError(detail, provider=PROVIDER)


def request_body(message: OutgoingMessage) -> bytes:
    """The JSON body of one message: the same bytes for the same message."""
    document = {
        "id": message.delivery_id,
        "type": EVENT_TYPE,
        "created_at": datetime.now(UTC).isoformat(),
        "data": {
            "delivery_id": message.delivery_id,
            "event_id": message.event_id,
            "event_type": message.event_type,
            "user_id": message.user.id,
            "subject": message.subject,
            "title": message.title,
            "body": message.body,
            "html": message.html,
            "payload": message.data,
        },
    }
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return max(0.0, float(response.headers.get("retry-after", "")))
    except ValueError:
        return None
