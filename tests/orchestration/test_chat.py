"""Chat channels end to end: a real worker sends Slack and Telegram deliveries to a server
playing both services' APIs, the chat taken from the recipient's address or the event,
preferences and failover applied as on every channel."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from standardwebhooks import Webhook

from tests.conftest import GraphQL
from tests.factories import fresh_window, token_for
from tests.orchestration.conftest import (
    FCM_PROJECT,
    SLACK_TOKENS,
    TELEGRAM_TOKEN,
    WEBHOOK_CHANNEL_SECRET,
    ChatApi,
)
from tests.orchestration.helpers import (
    SET_PREFERENCES,
    admin,
    create_template,
    deliver,
)

REGISTER = """mutation($i: AddressInput!) { registerAddress(input: $i) { __typename
  ... on Error { code message } } }"""
SLACK_POST = "/slack-a/api/chat.postMessage"
SLACK_B_POST = "/slack-b/api/chat.postMessage"
TELEGRAM_SEND = f"/telegram/bot{TELEGRAM_TOKEN}/sendMessage"


async def chat_template(api: GraphQL) -> str:
    content = [
        {
            "channel": "SLACK",
            "body": "Order {{ payload.order }} shipped, {{ user.first_name }}",
            "blocks": [
                {
                    "type": "section",
                    "text": {"type": "mrkdwn", "text": "*Order {{ payload.order }}* shipped"},
                }
            ],
        },
        {"channel": "TELEGRAM", "body": "<b>Order {{ payload.order }}</b> shipped"},
    ]
    return await create_template(api, "chat", "Chat", content)


async def register(api: GraphQL, user: str, address: dict[str, Any]) -> None:
    """Register ``address`` for ``user``, as the user's own app does."""
    registered = await api(
        REGISTER, {"i": address}, token=token_for(api.settings, "user", sub=user)
    )
    assert registered["data"]["registerAddress"]["__typename"] == "RecipientAddress", registered


async def send_order(
    api: GraphQL, slug: str, channel: str, users: list[str], payload: dict[str, Any]
) -> list[dict[str, Any]]:
    """An ``order_shipped`` event over ``channel`` to ``users``: their deliveries, once final."""
    return await deliver(
        api,
        type="order_shipped",
        userIds=users,
        templateSlug=slug,
        channels=[channel],
        payload=payload,
    )


def posts(chat: ChatApi, path: str, order: str) -> list[dict[str, Any]]:
    return [r for r in chat.received(path) if order in r["body"]["text"]]


def assert_failed_saying(delivery: dict[str, Any], reason: str) -> None:
    """The delivery failed, its last status change giving ``reason``."""
    assert delivery["status"] == "FAILED", delivery
    assert reason in delivery["timeline"][-1]["reason"]


async def test_slack_goes_to_the_recipients_slack_address_with_the_rendered_blocks(
    api: GraphQL, chat_api: ChatApi
) -> None:
    slug = await chat_template(api)
    channel_id = f"C{uuid.uuid4().hex[:8].upper()}"
    await register(api, "u-alice", {"chat": {"provider": "slack", "chatId": channel_id}})
    order = uuid.uuid4().hex[:6]

    [delivery] = await send_order(api, slug, "SLACK", ["u-alice"], {"order": order})

    # Slack answered with the posted message (its ts): delivered, not only sent.
    assert delivery["status"] == "DELIVERED", delivery
    assert [a["provider"] for a in delivery["attempts"]] == ["slack-a"]
    [request] = posts(chat_api, SLACK_POST, order)
    assert request["headers"]["authorization"] == f"Bearer {SLACK_TOKENS['slack-a']}"
    assert request["body"] == {
        "channel": channel_id,
        "text": f"Order {order} shipped, Alice",
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": f"*Order {order}* shipped"}}
        ],
    }


async def test_slack_fails_over_to_the_second_workspace_bot(
    api: GraphQL, chat_api: ChatApi
) -> None:
    slug = await chat_template(api)
    order = uuid.uuid4().hex[:6]
    chat_api.fail_next[SLACK_POST] = 1

    [delivery] = await send_order(
        api, slug, "SLACK", ["u-bruno"], {"order": order, "chat": {"slack": "C-OPS"}}
    )

    assert delivery["status"] == "DELIVERED", delivery
    assert [a["provider"] for a in delivery["attempts"]] == ["slack-a", "slack-b"]
    assert "503" in delivery["attempts"][0]["error"]
    assert [r["answered"] for r in posts(chat_api, SLACK_POST, order)] == [503]
    [taken] = posts(chat_api, SLACK_B_POST, order)
    assert taken["body"]["channel"] == "C-OPS"
    assert taken["headers"]["authorization"] == f"Bearer {SLACK_TOKENS['slack-b']}"


async def test_slacks_refusal_fails_the_delivery_with_slacks_reason(
    api: GraphQL, chat_api: ChatApi
) -> None:
    slug = await chat_template(api)
    order = uuid.uuid4().hex[:6]
    [delivery] = await send_order(
        api, slug, "SLACK", ["u-bruno"], {"order": order, "chat": {"slack": "C-GONE-1"}}
    )

    assert_failed_saying(delivery, "channel_not_found")
    # About the message, not the provider: no failover to the second bot.
    assert posts(chat_api, SLACK_B_POST, order) == []


async def test_telegram_takes_the_chat_from_the_event_and_respects_preferences(
    api: GraphQL, chat_api: ChatApi
) -> None:
    slug = await chat_template(api)
    order = uuid.uuid4().hex[:6]
    muted = await api(
        SET_PREFERENCES,
        {
            "input": {
                "userId": "u-bruno",
                "disabledChannels": ["TELEGRAM"],
                "disabledEventTypes": [],
            }
        },
        token=admin(api.settings),
    )
    assert muted["data"]["setPreferences"]["disabledChannels"] == ["TELEGRAM"]
    deliveries = await send_order(
        api,
        slug,
        "TELEGRAM",
        ["u-alice", "u-bruno"],
        {"order": f"<{order}>", "chat": {"telegram": -100123}},
    )

    by_user = {d["userId"]: d for d in deliveries}
    assert by_user["u-alice"]["status"] == "DELIVERED"
    assert [t["status"] for t in by_user["u-alice"]["timeline"]][-1] == "DELIVERED"
    assert by_user["u-bruno"]["status"] == "SKIPPED"
    [request] = posts(chat_api, TELEGRAM_SEND, order)
    assert request["body"] == {
        "chat_id": "-100123",
        "text": f"<b>Order &lt;{order}&gt;</b> shipped",
        "parse_mode": "HTML",
        "link_preview_options": {"is_disabled": True},
    }


async def test_a_recipient_without_a_chat_address_fails_saying_so(
    api: GraphQL, chat_api: ChatApi
) -> None:
    slug = await chat_template(api)
    order = uuid.uuid4().hex[:6]
    [delivery] = await send_order(api, slug, "TELEGRAM", ["u-chen"], {"order": order})
    assert_failed_saying(delivery, "no Telegram chat address")
    assert posts(chat_api, TELEGRAM_SEND, order) == []


async def test_the_webhook_channel_posts_signed_to_the_recipients_url_or_the_event_types(
    api: GraphQL, chat_api: ChatApi
) -> None:
    content = [
        {
            "channel": "WEBHOOK",
            "title": "Order {{ payload.order }}",
            "body": "Shipped to {{ user.first_name }}",
        }
    ]
    slug = await create_template(api, "hook", "Hook", content)
    own = f"/hooks/dana-{uuid.uuid4().hex[:6]}"
    await register(api, "u-dana", {"webhook": {"url": f"{chat_api.url}{own}"}})
    order = uuid.uuid4().hex[:6]

    deliveries = {
        d["userId"]: d
        for d in await send_order(api, slug, "WEBHOOK", ["u-dana", "u-emil"], {"order": order})
    }

    assert {u: d["status"] for u, d in deliveries.items()} == {"u-dana": "SENT", "u-emil": "SENT"}
    [to_dana] = chat_api.received(own)
    to_emil = [
        r
        for r in chat_api.received("/hooks/orders")
        if r["body"]["data"]["delivery_id"] == deliveries["u-emil"]["id"]
    ]
    assert len(to_emil) == 1
    for request, user, name in ((to_dana, "u-dana", "Dana"), (to_emil[0], "u-emil", "Emil")):
        headers = request["headers"]
        assert headers["webhook-id"] == deliveries[user]["id"]
        Webhook(WEBHOOK_CHANNEL_SECRET).verify(request["raw"], headers)
        assert request["body"]["data"]["title"] == f"Order {order}"
        assert request["body"]["data"]["body"] == f"Shipped to {name}"
        assert request["body"]["data"]["user_id"] == user


RECIPIENT = """query($u: ID!) { recipient(userId: $u) {
  addresses { kind displayValue state disabledReason } } }"""


async def test_mobile_push_goes_through_fcm_and_a_gone_token_is_disabled(
    api: GraphQL, chat_api: ChatApi
) -> None:
    content = [
        {
            "channel": "PUSH_MOBILE",
            "title": "Order {{ payload.order }}",
            "body": "On its way, {{ user.first_name }}",
            "data": {"screen": "orders/{{ payload.order }}"},
            "badge": 1,
        }
    ]
    slug = await create_template(api, "mobile", "Mobile", content)
    live, gone = f"live-{uuid.uuid4().hex[:10]}", f"gone-{uuid.uuid4().hex[:10]}"
    for token in (live, gone):
        await register(api, "u-emil", {"mobilePush": {"platform": "ANDROID", "token": token}})
    order = uuid.uuid4().hex[:6]

    [delivery] = await send_order(api, slug, "PUSH_MOBILE", ["u-emil"], {"order": order})

    assert delivery["status"] == "SENT", delivery
    assert [a["provider"] for a in delivery["attempts"]] == ["fcm"]
    sent = {
        r["body"]["message"]["token"]: r
        for r in chat_api.received(f"/fcm/v1/projects/{FCM_PROJECT}/messages:send")
        if r["body"]["message"]["data"].get("screen") == f"orders/{order}"
    }
    assert set(sent) == {live, gone}
    assert sent[live]["body"]["message"]["notification"] == {
        "title": f"Order {order}",
        "body": "On its way, Emil",
    }
    assert sent[live]["body"]["message"]["apns"] == {"payload": {"aps": {"badge": 1}}}

    recipient = await api(RECIPIENT, {"u": "u-emil"}, token=admin(api.settings))
    states = {
        a["displayValue"]: (a["state"], a["disabledReason"])
        for a in recipient["data"]["recipient"]["addresses"]
        if a["kind"] == "MOBILE_PUSH"
    }
    assert states[f"…{live[-6:]}"] == ("ACTIVE", None)
    state, reason = states[f"…{gone[-6:]}"]
    assert state == "DISABLED"
    assert "UNREGISTERED" in reason


SET_BUDGET = """mutation($input: DeliveryBudgetInput!) { setDeliveryBudget(input: $input) {
  __typename ... on DeliveryBudget { channel maxDeliveries } } }"""
REMOVE_BUDGET = """mutation($c: Channel!) { removeDeliveryBudget(channel: $c) {
  __typename ... on DeliveryBudgetRemoved { removed } } }"""
BUDGET_CACHE_SECONDS = 5.5  # how long a worker keeps its copy of the budgets


async def test_a_telegram_budget_skips_what_is_over_it(api: GraphQL, chat_api: ChatApi) -> None:
    slug = await chat_template(api)
    window = fresh_window()
    made = await api(
        SET_BUDGET,
        {"input": {"channel": "TELEGRAM", "maxDeliveries": 1, "windowSeconds": window}},
        token=admin(api.settings),
    )
    assert made["data"]["setDeliveryBudget"]["__typename"] == "DeliveryBudget", made
    try:
        await asyncio.sleep(BUDGET_CACHE_SECONDS)
        outcomes = []
        for _ in range(2):
            [delivery] = await send_order(
                api,
                slug,
                "TELEGRAM",
                ["u-dana"],
                {"order": uuid.uuid4().hex[:6], "chat": {"telegram": "777"}},
            )
            outcomes.append(delivery)
    finally:
        removed = await api(REMOVE_BUDGET, {"c": "TELEGRAM"}, token=admin(api.settings))
        assert removed["data"]["removeDeliveryBudget"]["removed"] is True
        await asyncio.sleep(BUDGET_CACHE_SECONDS)  # later tests see no budget
    assert [d["status"] for d in outcomes] == ["DELIVERED", "SKIPPED"]
    assert outcomes[1]["timeline"][0]["reason"] == (
        f"over the user's telegram budget: at most 1 every {window} s"
    )


async def test_a_telegram_user_who_blocked_the_bot_fails_and_their_chat_is_disabled(
    api: GraphQL, chat_api: ChatApi
) -> None:
    slug = await chat_template(api)
    chat_id = f"999{uuid.uuid4().int % 10**9}"
    registered = await api(
        REGISTER,
        {"i": {"chat": {"provider": "telegram", "chatId": chat_id}}},
        token=token_for(api.settings, "user", sub="u-chen"),
    )
    assert registered["data"]["registerAddress"]["__typename"] == "RecipientAddress", registered
    order = uuid.uuid4().hex[:6]

    [delivery] = await deliver(
        api,
        type="order_shipped",
        userIds=["u-chen"],
        templateSlug=slug,
        channels=["TELEGRAM"],
        payload={"order": order},
    )

    assert_failed_saying(delivery, "bot was blocked by the user")
    assert [r["answered"] for r in posts(chat_api, TELEGRAM_SEND, order)] == [403]
    recipient = await api(RECIPIENT, {"u": "u-chen"}, token=admin(api.settings))
    [address] = [
        a
        for a in recipient["data"]["recipient"]["addresses"]
        if a["kind"] == "CHAT" and chat_id in a["displayValue"]
    ]
    assert address["state"] == "DISABLED"
    assert "bot was blocked by the user" in address["disabledReason"]
