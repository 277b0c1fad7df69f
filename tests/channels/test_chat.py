"""The chat senders (Slack, Telegram, Discord, Teams) against a real HTTP server playing each
service: the exact request each service documents, and its answers, errors included."""

from __future__ import annotations

import json
from typing import Any

import pytest

from backend.channels import Channel
from backend.channels.base import PermanentChannelError, TransientChannelError
from backend.channels.chat import (
    DiscordWebhookSender,
    SlackBotSender,
    SlackWebhookSender,
    TeamsWebhookSender,
    TelegramSender,
    UnconfiguredChatSender,
    chat_sender,
)
from backend.channels.failover import FailoverSender, MemoryCircuitBreakers, Provider
from backend.channels.registry import build_senders, failover_chains
from backend.config import ChatProvider
from tests.channels.conftest import (
    HttpService,
    ReceivedRequest,
    Reply,
    channel_settings,
    closed_port,
    outgoing,
    running,
)

BOT_TOKEN = "xoxb-1234-5678-abcdefghijkl"
TELEGRAM_TOKEN = "123456:ABC-DEF1234ghIkl-zyx57W2v1u123ew11"
BLOCKS = [
    {"type": "header", "text": {"type": "plain_text", "text": "Welcome!"}},
    {"type": "section", "text": {"type": "mrkdwn", "text": "Hello *Ada*"}},
]
JSON_UTF8 = "application/json; charset=utf-8"


def provider(name: str, *, token: str | None = None, url: str | None = None) -> ChatProvider:
    return ChatProvider.model_validate({"name": name, "token": token, "url": url})


def sender(channel: Channel, name: str = "p1", **kwargs: str | None) -> Any:
    return chat_sender(channel, provider(name, **kwargs), channel_settings())


def slack_ok(request: ReceivedRequest) -> Reply:
    return Reply(200, {"ok": True, "channel": "C024BE91L", "ts": "1503435956.000247"})


# --- Slack, bot token -----------------------------------------------------------------------------


async def test_slack_bot_posts_chat_post_message_with_the_token_and_blocks(
    http_service: HttpService,
) -> None:
    http_service.respond = slack_ok
    bot = sender(Channel.SLACK, "slack-bot", token=BOT_TOKEN, url=f"{http_service.url}/api")
    assert isinstance(bot, SlackBotSender)
    async with running(bot):
        result = await bot.send(
            outgoing(Channel.SLACK, chat_id="C024BE91L", body="Welcome, Ada", blocks=BLOCKS)
        )

    assert result.provider == "slack-bot"
    assert result.provider_message_id == "C024BE91L/1503435956.000247"
    assert result.delivered  # Slack answered with the posted message's ts
    [request] = http_service.requests
    assert (request.method, request.path) == ("POST", "/api/chat.postMessage")
    assert request.headers["authorization"] == f"Bearer {BOT_TOKEN}"
    assert request.headers["content-type"] == JSON_UTF8
    assert request.json() == {"channel": "C024BE91L", "text": "Welcome, Ada", "blocks": BLOCKS}


async def test_slack_bot_without_blocks_sends_the_text_only(http_service: HttpService) -> None:
    http_service.respond = slack_ok
    bot = sender(Channel.SLACK, token=BOT_TOKEN, url=http_service.url)
    async with running(bot):
        await bot.send(outgoing(Channel.SLACK, chat_id="U0G9QF9C6", body="Hi"))
    assert http_service.requests[0].json() == {"channel": "U0G9QF9C6", "text": "Hi"}


@pytest.mark.parametrize(
    ("error", "gone"),
    [
        ("channel_not_found", True),
        ("is_archived", True),
        ("not_in_channel", True),
        ("msg_too_long", False),
        ("invalid_blocks", False),
    ],
)
async def test_slack_ok_false_about_the_message_is_permanent_with_slacks_error(
    http_service: HttpService, error: str, gone: bool
) -> None:
    http_service.respond = lambda r: Reply(200, {"ok": False, "error": error})
    bot = sender(Channel.SLACK, "slack-bot", token=BOT_TOKEN, url=http_service.url)
    async with running(bot):
        with pytest.raises(PermanentChannelError, match=error) as raised:
            await bot.send(outgoing(Channel.SLACK, chat_id="C-gone"))
    assert raised.value.provider == "slack-bot"
    # A channel that does not exist, was archived or dropped the bot will not take the next
    # message either: reported so that its address is disabled. A bad message is only failed.
    assert raised.value.expired_endpoints == (("C-gone",) if gone else ())


async def test_slack_ok_false_about_the_token_is_transient(http_service: HttpService) -> None:
    http_service.respond = lambda r: Reply(200, {"ok": False, "error": "invalid_auth"})
    bot = sender(Channel.SLACK, token=BOT_TOKEN, url=http_service.url)
    async with running(bot):
        with pytest.raises(TransientChannelError, match="invalid_auth"):
            await bot.send(outgoing(Channel.SLACK, chat_id="C1"))


async def test_slack_429_is_transient_with_its_retry_after(http_service: HttpService) -> None:
    http_service.respond = lambda r: Reply(
        429, {"ok": False, "error": "ratelimited"}, headers={"Retry-After": "30"}
    )
    bot = sender(Channel.SLACK, token=BOT_TOKEN, url=http_service.url)
    async with running(bot):
        with pytest.raises(TransientChannelError, match="ratelimited") as raised:
            await bot.send(outgoing(Channel.SLACK, chat_id="C1"))
    assert raised.value.retry_after == 30.0


async def test_slack_bot_without_a_chat_address_fails_without_a_request(
    http_service: HttpService,
) -> None:
    bot = sender(Channel.SLACK, token=BOT_TOKEN, url=http_service.url)
    async with running(bot):
        with pytest.raises(PermanentChannelError, match="no Slack chat address"):
            await bot.send(outgoing(Channel.SLACK, chat_id=None))
    assert http_service.requests == []


async def test_slack_unreachable_is_transient() -> None:
    bot = sender(Channel.SLACK, token=BOT_TOKEN, url=f"http://127.0.0.1:{closed_port()}")
    async with running(bot):
        with pytest.raises(TransientChannelError, match="cannot reach Slack"):
            await bot.send(outgoing(Channel.SLACK, chat_id="C1"))


# --- Slack, incoming webhook ----------------------------------------------------------------------


async def test_slack_webhook_posts_text_and_blocks_and_takes_ok(http_service: HttpService) -> None:
    http_service.respond = lambda r: Reply(200, text="ok")
    hook = sender(Channel.SLACK, "slack-hook", url=f"{http_service.url}/services/T0/B0/XyZ")
    assert isinstance(hook, SlackWebhookSender)
    async with running(hook):
        result = await hook.send(outgoing(Channel.SLACK, chat_id=None, body="Hi", blocks=BLOCKS))

    assert result.provider == "slack-hook"
    assert not result.delivered  # a plain "ok": accepted, no message to show for it
    [request] = http_service.requests
    assert (request.method, request.path) == ("POST", "/services/T0/B0/XyZ")
    assert "authorization" not in request.headers
    assert request.headers["content-type"] == JSON_UTF8
    assert request.json() == {"text": "Hi", "blocks": BLOCKS}


@pytest.mark.parametrize(
    ("status", "text", "error"),
    [
        (400, "invalid_payload", PermanentChannelError),
        (400, "no_text", PermanentChannelError),
        (404, "no_service", TransientChannelError),
        (410, "channel_is_archived", TransientChannelError),
        (403, "action_prohibited", TransientChannelError),
        (500, "rollup_error", TransientChannelError),
    ],
)
async def test_slack_webhook_errors(
    http_service: HttpService, status: int, text: str, error: type[Exception]
) -> None:
    http_service.respond = lambda r: Reply(status, text=text)
    hook = sender(Channel.SLACK, url=http_service.url)
    async with running(hook):
        with pytest.raises(error, match=text):
            await hook.send(outgoing(Channel.SLACK))


async def test_more_than_fifty_blocks_are_refused_before_any_request(
    http_service: HttpService,
) -> None:
    hook = sender(Channel.SLACK, url=http_service.url)
    async with running(hook):
        with pytest.raises(PermanentChannelError, match="at most 50"):
            await hook.send(outgoing(Channel.SLACK, blocks=[{"type": "divider"}] * 51))
    assert http_service.requests == []


# --- Telegram -------------------------------------------------------------------------------------


async def test_telegram_send_message_in_html_parse_mode(http_service: HttpService) -> None:
    http_service.respond = lambda r: Reply(
        200,
        {
            "ok": True,
            "result": {"message_id": 4711, "chat": {"id": -1001234}, "date": 1, "text": "x"},
        },
    )
    bot = sender(Channel.TELEGRAM, "tg", token=TELEGRAM_TOKEN, url=http_service.url)
    assert isinstance(bot, TelegramSender)
    text = "<b>Hello</b> Ada &lt;3"
    async with running(bot):
        result = await bot.send(outgoing(Channel.TELEGRAM, chat_id="-1001234", body=text))

    assert result.provider == "tg"
    assert result.provider_message_id == "-1001234/4711"
    assert result.delivered  # Telegram answered with the Message sent
    [request] = http_service.requests
    assert (request.method, request.path) == ("POST", f"/bot{TELEGRAM_TOKEN}/sendMessage")
    assert request.headers["content-type"].startswith("application/json")
    assert request.json() == {
        "chat_id": "-1001234",
        "text": text,
        "parse_mode": "HTML",
        "link_preview_options": {"is_disabled": True},
    }


async def test_telegram_bad_request_is_permanent_with_telegrams_description(
    http_service: HttpService,
) -> None:
    http_service.respond = lambda r: Reply(
        400, {"ok": False, "error_code": 400, "description": "Bad Request: chat not found"}
    )
    bot = sender(Channel.TELEGRAM, token=TELEGRAM_TOKEN, url=http_service.url)
    async with running(bot):
        with pytest.raises(PermanentChannelError, match="Bad Request: chat not found"):
            await bot.send(outgoing(Channel.TELEGRAM, chat_id="42"))


async def test_telegram_blocked_bot_is_permanent(http_service: HttpService) -> None:
    http_service.respond = lambda r: Reply(
        403,
        {"ok": False, "error_code": 403, "description": "Forbidden: bot was blocked by the user"},
    )
    bot = sender(Channel.TELEGRAM, token=TELEGRAM_TOKEN, url=http_service.url)
    async with running(bot):
        with pytest.raises(PermanentChannelError, match="bot was blocked by the user") as raised:
            await bot.send(outgoing(Channel.TELEGRAM, chat_id="42"))
    # The chat is gone for good: reported so that its address is disabled.
    assert raised.value.expired_endpoints == ("42",)
    assert "bot was blocked by the user" in raised.value.expired_reasons["42"]


@pytest.mark.parametrize(
    ("status", "description", "gone"),
    [
        (403, "Forbidden: user is deactivated", True),
        (403, "Forbidden: bot was kicked from the supergroup chat", True),
        (400, "Bad Request: chat not found", True),
        (403, "Forbidden: bot can't initiate conversation with a user", False),
        (400, "Bad Request: can't parse entities: Unsupported start tag", False),
    ],
)
async def test_telegram_reports_a_chat_gone_only_when_it_is(
    http_service: HttpService, status: int, description: str, gone: bool
) -> None:
    http_service.respond = lambda r: Reply(
        status, {"ok": False, "error_code": status, "description": description}
    )
    bot = sender(Channel.TELEGRAM, token=TELEGRAM_TOKEN, url=http_service.url)
    async with running(bot):
        with pytest.raises(PermanentChannelError, match=description) as raised:
            await bot.send(outgoing(Channel.TELEGRAM, chat_id="-100777"))
    assert raised.value.expired_endpoints == (("-100777",) if gone else ())


async def test_telegram_429_carries_retry_after_from_parameters(http_service: HttpService) -> None:
    http_service.respond = lambda r: Reply(
        429,
        {
            "ok": False,
            "error_code": 429,
            "description": "Too Many Requests: retry after 7",
            "parameters": {"retry_after": 7},
        },
    )
    bot = sender(Channel.TELEGRAM, token=TELEGRAM_TOKEN, url=http_service.url)
    async with running(bot):
        with pytest.raises(TransientChannelError, match="retry after 7") as raised:
            await bot.send(outgoing(Channel.TELEGRAM, chat_id="42"))
    assert raised.value.retry_after == 7.0


async def test_telegram_wrong_token_is_transient(http_service: HttpService) -> None:
    http_service.respond = lambda r: Reply(
        401, {"ok": False, "error_code": 401, "description": "Unauthorized"}
    )
    bot = sender(Channel.TELEGRAM, token="0:bad", url=http_service.url)
    async with running(bot):
        with pytest.raises(TransientChannelError, match="Unauthorized"):
            await bot.send(outgoing(Channel.TELEGRAM, chat_id="42"))


async def test_telegram_text_over_4096_characters_is_refused(http_service: HttpService) -> None:
    bot = sender(Channel.TELEGRAM, token=TELEGRAM_TOKEN, url=http_service.url)
    async with running(bot):
        with pytest.raises(PermanentChannelError, match="at most 4096"):
            await bot.send(outgoing(Channel.TELEGRAM, chat_id="42", body="x" * 4097))
    assert http_service.requests == []


# --- Discord --------------------------------------------------------------------------------------


async def test_discord_webhook_waits_for_the_message_and_disables_mentions(
    http_service: HttpService,
) -> None:
    http_service.respond = lambda r: Reply(
        200, {"id": "1100000000000000001", "channel_id": "99", "content": "x", "type": 0}
    )
    hook = sender(Channel.DISCORD, "discord-a", url=f"{http_service.url}/api/webhooks/123/tok-en")
    assert isinstance(hook, DiscordWebhookSender)
    async with running(hook):
        result = await hook.send(outgoing(Channel.DISCORD, title="Welcome!", body="Hi @everyone"))

    assert result.provider_message_id == "1100000000000000001"
    assert result.delivered  # ?wait=true: Discord answered with the posted message
    [request] = http_service.requests
    assert (request.method, request.path) == ("POST", "/api/webhooks/123/tok-en?wait=true")
    assert request.json() == {
        "content": "Hi @everyone",
        "allowed_mentions": {"parse": []},
        "embeds": [{"title": "Welcome!"}],
    }


async def test_discord_rate_limit_carries_retry_after(http_service: HttpService) -> None:
    http_service.respond = lambda r: Reply(
        429,
        {"message": "You are being rate limited.", "retry_after": 1.5, "global": False},
        headers={"Retry-After": "2"},
    )
    hook = sender(Channel.DISCORD, url=http_service.url)
    async with running(hook):
        with pytest.raises(TransientChannelError, match="rate limited") as raised:
            await hook.send(outgoing(Channel.DISCORD))
    assert raised.value.retry_after == 1.5


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (400, {"code": 50035, "message": "Invalid Form Body"}, PermanentChannelError),
        (404, {"code": 10015, "message": "Unknown Webhook"}, TransientChannelError),
        (502, {"message": "Bad Gateway"}, TransientChannelError),
    ],
)
async def test_discord_errors(
    http_service: HttpService, status: int, body: dict[str, Any], error: type[Exception]
) -> None:
    http_service.respond = lambda r: Reply(status, body)
    hook = sender(Channel.DISCORD, url=http_service.url)
    async with running(hook):
        with pytest.raises(error, match=body["message"]):
            await hook.send(outgoing(Channel.DISCORD))


# --- Microsoft Teams ------------------------------------------------------------------------------


def expected_card(title: str, body: str) -> dict[str, Any]:
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
                    "body": [
                        {
                            "type": "TextBlock",
                            "text": title,
                            "weight": "Bolder",
                            "size": "Medium",
                            "wrap": True,
                        },
                        {"type": "TextBlock", "text": body, "wrap": True},
                    ],
                },
            }
        ],
    }


@pytest.mark.parametrize("answer", [Reply(202), Reply(200, text="1")], ids=["workflows", "webhook"])
async def test_teams_posts_an_adaptive_card(http_service: HttpService, answer: Reply) -> None:
    http_service.respond = lambda r: answer
    hook = sender(Channel.TEAMS, "teams", url=f"{http_service.url}/workflows/abc/triggers/manual")
    assert isinstance(hook, TeamsWebhookSender)
    async with running(hook):
        result = await hook.send(outgoing(Channel.TEAMS, title="Welcome!", body="Hello Ada"))

    assert result.provider == "teams"
    assert not result.delivered  # Teams and Workflows only accept the card
    [request] = http_service.requests
    assert (request.method, request.path) == ("POST", "/workflows/abc/triggers/manual")
    assert request.json() == expected_card("Welcome!", "Hello Ada")


@pytest.mark.parametrize(
    ("status", "error"),
    [(400, PermanentChannelError), (410, TransientChannelError), (429, TransientChannelError)],
)
async def test_teams_errors(http_service: HttpService, status: int, error: type[Exception]) -> None:
    http_service.respond = lambda r: Reply(status, text="Webhook message delivery failed")
    hook = sender(Channel.TEAMS, url=http_service.url)
    async with running(hook):
        with pytest.raises(error, match=f"{status}.*Webhook message delivery failed"):
            await hook.send(outgoing(Channel.TEAMS))


# --- Failover: two providers of each chat channel -------------------------------------------------


def failover(channel: Channel, first: Any, second: Any) -> FailoverSender:
    return FailoverSender(
        channel,
        [Provider(first.name, first), Provider(second.name, second)],
        MemoryCircuitBreakers(threshold=5, open_seconds=30),
    )


@pytest.mark.parametrize(
    ("channel", "first_answer", "second_answer", "make"),
    [
        (
            Channel.SLACK,
            Reply(503, text="upstream connect error"),
            Reply(200, text="ok"),
            lambda a, b: (
                sender(Channel.SLACK, "slack-bot", token=BOT_TOKEN, url=a),
                sender(Channel.SLACK, "slack-hook", url=f"{b}/services/T/B/X"),
            ),
        ),
        (
            Channel.TELEGRAM,
            Reply(429, {"ok": False, "error_code": 429, "description": "Too Many Requests"}),
            Reply(200, {"ok": True, "result": {"message_id": 5}}),
            lambda a, b: (
                sender(Channel.TELEGRAM, "tg-a", token=TELEGRAM_TOKEN, url=a),
                sender(Channel.TELEGRAM, "tg-b", token=TELEGRAM_TOKEN, url=b),
            ),
        ),
        (
            Channel.DISCORD,
            Reply(404, {"code": 10015, "message": "Unknown Webhook"}),
            Reply(200, {"id": "77"}),
            lambda a, b: (
                sender(Channel.DISCORD, "discord-a", url=f"{a}/api/webhooks/1/x"),
                sender(Channel.DISCORD, "discord-b", url=f"{b}/api/webhooks/2/y"),
            ),
        ),
        (
            Channel.TEAMS,
            Reply(500, text="Internal Server Error"),
            Reply(202),
            lambda a, b: (
                sender(Channel.TEAMS, "teams-hook", url=f"{a}/webhookb2/x"),
                sender(Channel.TEAMS, "teams-flow", url=f"{b}/workflows/y"),
            ),
        ),
    ],
    ids=["slack", "telegram", "discord", "teams"],
)
async def test_a_failing_provider_hands_the_message_to_the_second(
    http_service: HttpService,
    second_service: HttpService,
    channel: Channel,
    first_answer: Reply,
    second_answer: Reply,
    make: Any,
) -> None:
    http_service.respond = lambda r: first_answer
    second_service.respond = lambda r: second_answer
    first, second = make(http_service.url, second_service.url)
    chain = failover(channel, first, second)
    async with running(chain):
        result = await chain.send(outgoing(channel, chat_id="42"))

    assert result.provider == second.name
    [tried] = result.failed_tries
    assert tried.provider == first.name
    assert str(first_answer.status) in tried.error
    assert len(http_service.requests) == 1
    assert len(second_service.requests) == 1
    first_body, second_body = http_service.requests[0].json(), second_service.requests[0].json()
    if channel is Channel.SLACK:
        # The bot names the recipient's channel; the incoming webhook posts to its own.
        assert first_body == {"channel": "42", **second_body}
    else:
        assert first_body == second_body


async def test_a_message_error_does_not_fail_over(
    http_service: HttpService, second_service: HttpService
) -> None:
    http_service.respond = lambda r: Reply(
        400, {"ok": False, "error_code": 400, "description": "Bad Request: chat not found"}
    )
    chain = failover(
        Channel.TELEGRAM,
        sender(Channel.TELEGRAM, "tg-a", token=TELEGRAM_TOKEN, url=http_service.url),
        sender(Channel.TELEGRAM, "tg-b", token=TELEGRAM_TOKEN, url=second_service.url),
    )
    async with running(chain):
        with pytest.raises(PermanentChannelError, match="chat not found"):
            await chain.send(outgoing(Channel.TELEGRAM, chat_id="42"))
    assert second_service.requests == []


# --- Configuration --------------------------------------------------------------------------------


async def test_registry_builds_a_chain_per_chat_channel_from_its_providers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # As an operator sets it: a JSON list in the environment.
    monkeypatch.setenv(
        "HERALD_SLACK_PROVIDERS",
        json.dumps(
            [
                {"name": "slack-bot", "token": BOT_TOKEN},
                {"name": "slack-hook", "url": "https://hooks.slack.com/services/T/B/X"},
            ]
        ),
    )
    settings = channel_settings(telegram_providers=[{"name": "tg", "token": TELEGRAM_TOKEN}])
    senders = build_senders(settings)

    slack = senders[Channel.SLACK]
    assert isinstance(slack, FailoverSender)
    assert [type(p.sender) for p in slack.providers] == [SlackBotSender, SlackWebhookSender]
    assert isinstance(senders[Channel.TELEGRAM], TelegramSender)
    assert isinstance(senders[Channel.DISCORD], UnconfiguredChatSender)
    assert failover_chains(settings)[Channel.SLACK] == ["slack-bot", "slack-hook"]
    assert Channel.TELEGRAM not in failover_chains(settings)
    with pytest.raises(PermanentChannelError, match="HERALD_TEAMS_PROVIDERS"):
        await senders[Channel.TEAMS].send(outgoing(Channel.TEAMS))


def test_provider_names_must_be_unique_per_channel() -> None:
    with pytest.raises(ValueError, match="HERALD_DISCORD_PROVIDERS"):
        channel_settings(
            discord_providers=[{"name": "d", "url": "https://x"}, {"name": "d", "url": "https://y"}]
        )


def test_a_provider_missing_what_its_channel_needs_is_refused() -> None:
    with pytest.raises(ValueError, match="a bot token is required"):
        sender(Channel.TELEGRAM, url="https://api.telegram.org")
    with pytest.raises(ValueError, match="a webhook url is required"):
        sender(Channel.DISCORD, token="x")
