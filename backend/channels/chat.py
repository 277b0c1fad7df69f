"""Chat channels: Slack, Telegram, Discord and Microsoft Teams, over each service's HTTP API.

One sender per provider (``HERALD_<CHANNEL>_PROVIDERS``; several make a failover chain):

- Slack, with a bot token: ``POST {api}/chat.postMessage`` (``Authorization: Bearer``) to the
  recipient's Slack channel or user id, the template's text and Block Kit blocks. Slack answers
  200 with ``{"ok": false, "error": ...}`` when it refuses.
- Slack, an incoming webhook: ``POST`` the text and blocks to the webhook, which posts to its
  own channel (the recipient's address is not used). Slack answers ``ok`` as plain text, or a
  4xx with the reason as plain text (``invalid_payload``, ``channel_is_archived``...).
- Telegram: ``POST {api}/bot<token>/sendMessage`` with ``parse_mode: HTML`` (the template's
  body, its variables HTML-escaped) to the recipient's chat id. Telegram answers
  ``{"ok": false, "error_code", "description", "parameters": {"retry_after"}}`` when it refuses.
- Discord: ``POST <webhook>?wait=true`` with the content (and the title as an embed), mentions
  disabled. Discord answers the message, or ``{"code", "message"}`` / a 429 with
  ``retry_after``.
- Teams: ``POST`` an Adaptive Card message to an incoming webhook or a Workflows URL.

What the providers confirm: Slack's ``chat.postMessage`` (its ``ts``), Telegram's
``sendMessage`` (the Message) and Discord's webhook with ``?wait=true`` (the message) answer once
the message is posted in the chat, so the delivery becomes ``delivered``; a Slack incoming webhook
(plain ``ok``) and Teams (Workflows answers 202 before running the flow) only accept it: ``sent``.

A refusal that is about the message (a chat that does not exist, a bot that was blocked) is
permanent, with the provider's reason. A Slack channel not found, archived or without the bot,
and a Telegram chat that blocked the bot, was deleted or removed the bot, are reported gone
(``expired_reasons``) and their address disabled. A refusal that is about the provider (a 5xx,
a rate limit, a revoked token) is transient, so failover moves on to the next provider. A 429's
``Retry-After`` (or the provider's ``retry_after``) travels with the error: the retry waits at
least that long.
"""

from __future__ import annotations

import json
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
from backend.config import ChatProvider, Settings

SLACK_API = "https://slack.com/api"
TELEGRAM_API = "https://api.telegram.org"
# Service limits: longer messages are refused by the service, so they fail here, permanently.
SLACK_MAX_BLOCKS = 50
TELEGRAM_MAX_CHARS = 4096
DISCORD_MAX_CHARS = 2000
DISCORD_MAX_TITLE = 256
# Slack errors saying the channel will not take the bot's messages again (chat.postMessage).
_SLACK_CHANNEL_GONE = frozenset({"channel_not_found", "is_archived", "not_in_channel"})
# Slack errors about the provider (its token, its workspace, its load), not about the message:
# failover moves on. Any other ``error`` (channel_not_found, is_archived...) is permanent.
_SLACK_PROVIDER_ERRORS = frozenset(
    {
        "not_authed",
        "invalid_auth",
        "account_inactive",
        "token_revoked",
        "token_expired",
        "no_permission",
        "missing_scope",
        "org_login_required",
        "ekm_access_denied",
        "ratelimited",
        "rate_limited",
        "request_timeout",
        "service_unavailable",
        "fatal_error",
        "internal_error",
        "team_access_not_granted",
    }
)


def _secret(value: Any) -> str | None:
    return value.get_secret_value() if value is not None else None


def _retry_after(response: httpx.Response, body: Any = None) -> float | None:
    """Seconds to wait, from the body's ``retry_after`` (Telegram under ``parameters``) or the
    ``Retry-After`` header (seconds)."""
    if isinstance(body, dict):
        for holder in (body, body.get("parameters")):
            if isinstance(holder, dict) and isinstance(holder.get("retry_after"), int | float):
                return float(holder["retry_after"])
    header = response.headers.get("retry-after")
    if header:
        try:
            return max(0.0, float(header))
        except ValueError:
            return None
    return None


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


class _ChatSender(HttpProviderSender):
    """What every chat sender shares: its name, the POST and its transport errors."""

    channel: Channel
    service: str  # as errors name it: "Slack", "Telegram"...

    def __init__(self, provider: ChatProvider, settings: Settings) -> None:
        self.name = provider.name
        self._timeout = settings.chat_timeout_seconds

    async def _post(self, url: httpx.URL | str, payload: dict[str, Any]) -> httpx.Response:
        client = self._started_client()
        with self._unanswered_is_transient(self.service, provider=self.name):
            # Slack warns about a JSON body without its charset; the others accept it.
            return await client.post(
                url,
                content=json.dumps(payload, ensure_ascii=False).encode(),
                headers={"Content-Type": "application/json; charset=utf-8"},
            )

    async def send(self, message: OutgoingMessage) -> SendResult:
        raise NotImplementedError

    def _http_error(self, response: httpx.Response, reason: str) -> TransientChannelError | None:
        """The transient error of a 429 or 5xx answer, else ``None``."""
        status = response.status_code
        if status == 429:
            wait = _retry_after(response, _json(response))
            return TransientChannelError(
                f"{self.service} is rate limiting (429: {reason})"
                + (f"; retry after {wait:g} s" if wait is not None else ""),
                provider=self.name,
                retry_after=wait,
            )
        if status >= 500 or status == 408:
            return TransientChannelError(
                f"{self.service} answered {status}: {reason}", provider=self.name
            )
        return None

    def _chat_id(self, message: OutgoingMessage) -> str:
        if not message.chat_id:
            raise PermanentChannelError(
                f"the recipient has no {self.service} chat address", provider=self.name
            )
        return message.chat_id

    def _text(self, message: OutgoingMessage) -> str:
        if not (message.body or "").strip():
            raise PermanentChannelError(
                f"the {self.service} message has no text", provider=self.name
            )
        return message.body or ""

    def _short_text(self, message: OutgoingMessage, limit: int) -> str:
        """The message's text, refused when longer than the service takes."""
        text = self._text(message)
        if len(text) > limit:
            raise PermanentChannelError(
                f"the {self.service} message is {len(text)} characters; {self.service} takes "
                f"at most {limit}",
                provider=self.name,
            )
        return text

    def _refusal(
        self, detail: str, *, provider_fault: bool
    ) -> TransientChannelError | PermanentChannelError:
        """A refusal: the provider's fault (the next provider may still work) is transient,
        the message's is permanent."""
        if provider_fault:
            return TransientChannelError(detail, provider=self.name)
        return PermanentChannelError(detail, provider=self.name)


class _IncomingWebhookSender(_ChatSender):
    """A sender posting to the incoming webhook URL its provider gives (Slack's, Teams')."""

    def __init__(self, provider: ChatProvider, settings: Settings) -> None:
        super().__init__(provider, settings)
        self._url = httpx.URL(_secret(provider.url) or "")

    async def _post_to_webhook(self, payload: dict[str, Any], who: str) -> SendResult:
        """POST to an incoming webhook that answers plain text: any 2xx is sent; 401, 403,
        404 and 410 (the webhook gone or no longer allowed) are the provider's fault."""
        response = await self._post(self._url, payload)
        reason = response.text[:200].strip() or response.reason_phrase
        if (error := self._http_error(response, reason)) is not None:
            raise error
        if response.is_success:
            return SendResult(provider=self.name)
        detail = f"{who} answered {response.status_code}: {reason}"
        raise self._refusal(detail, provider_fault=response.status_code in (401, 403, 404, 410))


# --- Slack ---------------------------------------------------------------------------------------


def _slack_payload(message: OutgoingMessage, text: str) -> dict[str, Any]:
    payload: dict[str, Any] = {"text": text}
    if message.blocks:
        if len(message.blocks) > SLACK_MAX_BLOCKS:
            raise ValueError(
                f"{len(message.blocks)} blocks; Slack takes at most {SLACK_MAX_BLOCKS}"
            )
        payload["blocks"] = message.blocks
    return payload


class SlackBotSender(_ChatSender):
    """``chat.postMessage`` with a bot token."""

    channel: Channel = Channel.SLACK
    service = "Slack"

    def __init__(self, provider: ChatProvider, settings: Settings) -> None:
        super().__init__(provider, settings)
        self._token = _secret(provider.token) or ""
        base = _secret(provider.url) or SLACK_API
        self._url = httpx.URL(base.rstrip("/") + "/chat.postMessage")

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token}"}

    async def send(self, message: OutgoingMessage) -> SendResult:
        channel = self._chat_id(message)
        try:
            payload = {"channel": channel, **_slack_payload(message, self._text(message))}
        except ValueError as exc:
            raise PermanentChannelError(str(exc), provider=self.name) from exc
        response = await self._post(self._url, payload)
        body = _json(response)
        reason = (
            str(body.get("error")) if isinstance(body, dict) else response.text[:200]
        ) or response.reason_phrase
        if (error := self._http_error(response, reason)) is not None:
            raise error
        if not response.is_success or not isinstance(body, dict):
            raise TransientChannelError(
                f"Slack answered {response.status_code}: {response.text[:200]}", provider=self.name
            )
        if body.get("ok") is True:
            ts = body.get("ts")
            # Slack answers once the message is posted in the channel: its ts names it there.
            return SendResult(
                provider=self.name,
                provider_message_id=f"{body.get('channel') or channel}/{ts}" if ts else None,
                delivered=bool(ts),
            )
        detail = f"Slack refused the message: {reason}"
        if reason in _SLACK_CHANNEL_GONE:
            # The channel was deleted or archived, or the bot removed from it: disable the
            # address (as a Telegram chat that blocked the bot is), until it is registered again.
            raise PermanentChannelError(
                detail, provider=self.name, expired_reasons={channel: detail}
            )
        raise self._refusal(detail, provider_fault=reason in _SLACK_PROVIDER_ERRORS)


class SlackWebhookSender(_IncomingWebhookSender):
    """An incoming webhook: posts to the webhook's own channel."""

    channel: Channel = Channel.SLACK
    service = "Slack"

    async def send(self, message: OutgoingMessage) -> SendResult:
        try:
            payload = _slack_payload(message, self._text(message))
        except ValueError as exc:
            raise PermanentChannelError(str(exc), provider=self.name) from exc
        # Gone, disabled or its channel archived (no_service, action_prohibited,
        # channel_is_archived): the next provider may still work.
        return await self._post_to_webhook(payload, "the Slack webhook")


# --- Telegram ------------------------------------------------------------------------------------


class TelegramSender(_ChatSender):
    """The Bot API's ``sendMessage`` in HTML parse mode."""

    channel: Channel = Channel.TELEGRAM
    service = "Telegram"

    def __init__(self, provider: ChatProvider, settings: Settings) -> None:
        super().__init__(provider, settings)
        token = _secret(provider.token) or ""
        base = (_secret(provider.url) or TELEGRAM_API).rstrip("/")
        self._url = httpx.URL(f"{base}/bot{token}/sendMessage")

    async def send(self, message: OutgoingMessage) -> SendResult:
        chat_id = self._chat_id(message)
        text = self._short_text(message, TELEGRAM_MAX_CHARS)
        payload = {
            "chat_id": chat_id,
            "text": text,
            "parse_mode": "HTML",
            "link_preview_options": {"is_disabled": True},
        }
        response = await self._post(self._url, payload)
        body = _json(response)
        description = (
            str(body.get("description")) if isinstance(body, dict) else response.text[:200]
        )
        if (error := self._http_error(response, description)) is not None:
            raise error
        if isinstance(body, dict) and body.get("ok") is True and response.is_success:
            result = body.get("result")
            message_id = result.get("message_id") if isinstance(result, dict) else None
            # sendMessage answers with the Message sent in the chat.
            return SendResult(
                provider=self.name,
                provider_message_id=f"{chat_id}/{message_id}" if message_id is not None else None,
                delivered=message_id is not None,
            )
        detail = f"Telegram refused the message ({response.status_code}): {description}"
        # 401: the bot token is wrong or revoked; 404: no such bot. The provider's fault.
        provider_fault = response.status_code in (401, 404)
        if not provider_fault and _telegram_chat_gone(response.status_code, description):
            # The recipient blocked the bot, left or deleted the chat: disable the address.
            raise PermanentChannelError(
                detail, provider=self.name, expired_reasons={chat_id: detail}
            )
        raise self._refusal(detail, provider_fault=provider_fault)


# What Telegram says (in ``description``) when a chat will never take the bot's messages again:
# a 403 for a user who blocked the bot or was deleted, a bot removed from a group; a 400 for a
# chat that does not exist (any more).
_TELEGRAM_GONE_403 = (
    "bot was blocked by the user",
    "user is deactivated",
    "bot was kicked",
    "bot is not a member",
)
_TELEGRAM_GONE_400 = ("chat not found", "group chat was deleted", "peer_id_invalid")


def _telegram_chat_gone(status: int, description: str) -> bool:
    text = description.lower()
    if status == 403:
        return any(marker in text for marker in _TELEGRAM_GONE_403)
    if status == 400:
        return any(marker in text for marker in _TELEGRAM_GONE_400)
    return False


# --- Discord -------------------------------------------------------------------------------------


class DiscordWebhookSender(_ChatSender):
    """A channel webhook: ``POST <webhook>?wait=true``, so Discord answers the message."""

    channel: Channel = Channel.DISCORD
    service = "Discord"

    def __init__(self, provider: ChatProvider, settings: Settings) -> None:
        super().__init__(provider, settings)
        self._url = httpx.URL(_secret(provider.url) or "").copy_merge_params({"wait": "true"})

    async def send(self, message: OutgoingMessage) -> SendResult:
        text = self._short_text(message, DISCORD_MAX_CHARS)
        payload: dict[str, Any] = {"content": text, "allowed_mentions": {"parse": []}}
        if message.title:
            payload["embeds"] = [{"title": message.title[:DISCORD_MAX_TITLE]}]
        response = await self._post(self._url, payload)
        body = _json(response)
        reason = (
            str(body.get("message"))
            if isinstance(body, dict) and "message" in body
            else response.text[:200]
        )
        if (error := self._http_error(response, reason)) is not None:
            raise error
        if response.is_success:
            # ?wait=true: Discord answers with the message posted in the channel.
            message_id = body.get("id") if isinstance(body, dict) else None
            return SendResult(
                provider=self.name,
                provider_message_id=str(message_id) if message_id else None,
                delivered=bool(message_id),
            )
        detail = f"Discord answered {response.status_code}: {reason}"
        # An unknown or deleted webhook: the provider's fault, not the message's.
        raise self._refusal(detail, provider_fault=response.status_code in (401, 403, 404))


# --- Microsoft Teams -----------------------------------------------------------------------------


def adaptive_card(title: str | None, body: str) -> dict[str, Any]:
    """The message Teams incoming webhooks and Workflows take: one Adaptive Card attachment."""
    blocks: list[dict[str, Any]] = []
    if title:
        blocks.append(
            {"type": "TextBlock", "text": title, "weight": "Bolder", "size": "Medium", "wrap": True}
        )
    blocks.append({"type": "TextBlock", "text": body, "wrap": True})
    return {
        "type": "message",
        "attachments": [
            {
                "contentType": "application/vnd.microsoft.card.adaptive",
                "contentUrl": None,
                "content": {
                    "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                    "type": "AdaptiveCard",
                    "version": "1.4",
                    "body": blocks,
                },
            }
        ],
    }


class TeamsWebhookSender(_IncomingWebhookSender):
    """An incoming webhook or a Workflows URL, posting an Adaptive Card."""

    channel: Channel = Channel.TEAMS
    service = "Teams"

    async def send(self, message: OutgoingMessage) -> SendResult:
        payload = adaptive_card(message.title, self._text(message))
        # The webhook or flow gone or no longer authorised: the next provider may still work.
        return await self._post_to_webhook(payload, "Teams")


def chat_sender(channel: Channel, provider: ChatProvider, settings: Settings) -> _ChatSender:
    """The sender of one configured provider of a chat channel."""
    if channel is Channel.SLACK:
        if provider.token is not None:
            return SlackBotSender(provider, settings)
        if provider.url is None:
            raise ValueError(f"Slack provider {provider.name}: give a bot token or a webhook url")
        return SlackWebhookSender(provider, settings)
    if channel is Channel.TELEGRAM:
        if provider.token is None:
            raise ValueError(f"Telegram provider {provider.name}: a bot token is required")
        return TelegramSender(provider, settings)
    if provider.url is None:
        raise ValueError(f"{channel.value} provider {provider.name}: a webhook url is required")
    if channel is Channel.DISCORD:
        return DiscordWebhookSender(provider, settings)
    if channel is Channel.TEAMS:
        return TeamsWebhookSender(provider, settings)
    raise ValueError(f"{channel.value} is not a chat channel")


class UnconfiguredChatSender:
    """The sender of a chat channel with no provider configured: every send fails, saying so."""

    def __init__(self, channel: Channel) -> None:
        self.channel = channel

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def send(self, message: OutgoingMessage) -> SendResult:
        raise PermanentChannelError(
            f"the {self.channel.value} channel is not configured: set "
            f"HERALD_{self.channel.value.upper()}_PROVIDERS",
            provider=self.channel.value,
        )
