"""Throttles per event type and budgets per channel, through a real worker and Redis."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from tests.factories import create_template, fresh_window, token_for
from tests.pipeline.servers import eventually

REGISTER = """mutation($input: RegisterEventTypeInput!) { registerEventType(input: $input) {
  __typename ... on EventType { name throttle { limit windowSeconds } }
  ... on Error { code message field } } }"""
SEND = """mutation($input: EventInput!) { sendEvent(input: $input) {
  ... on EventAccepted { eventId } } }"""
EVENT = """query($id: ID!) { event(id: $id) { deliveries { userId channel status
  timeline { reason } } } }"""
SET_BUDGET = """mutation($input: DeliveryBudgetInput!) { setDeliveryBudget(input: $input) {
  __typename ... on DeliveryBudget { channel maxDeliveries windowSeconds }
  ... on Error { code message field } } }"""
BUDGET_CACHE_SECONDS = 5.5
REMOVE_BUDGET = """mutation($c: Channel!) { removeDeliveryBudget(channel: $c) {
  __typename ... on DeliveryBudgetRemoved { removed } } }"""


@pytest.fixture
def admin(settings: Any) -> str:
    return token_for(settings, "admin", sub="admin-limits")


@pytest.fixture
async def template(e2e: Any, admin: str) -> str:
    slug = f"limits-{uuid.uuid4().hex[:8]}"
    content = [{"channel": "IN_APP", "locale": "en", "title": "{{ event.id }}", "body": "b"}]
    return await create_template(e2e, admin, slug, content, name="L")


async def final(e2e: Any, admin: str, event_id: str) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        body = await e2e(EVENT, {"id": event_id}, token=admin)
        items = body["data"]["event"]["deliveries"]
        done = items and all(d["status"] in ("SENT", "SKIPPED") for d in items)
        return items[0] if done else None

    result: dict[str, Any] = await eventually(check, timeout=20)
    return result


async def send(e2e: Any, settings: Any, **event: Any) -> str:
    body = await e2e(SEND, {"input": event}, token=token_for(settings, "service", sub="svc"))
    event_id: str = body["data"]["sendEvent"]["eventId"]
    return event_id


async def test_a_throttled_type_skips_what_exceeds_its_limit(e2e, settings, admin, template):
    name = f"digestible.{uuid.uuid4().hex[:6]}"

    async def register(throttle: dict[str, int]) -> dict[str, Any]:
        event_type = {"name": name, "templateSlug": template, "channels": ["IN_APP"]}
        body = await e2e(REGISTER, {"input": {**event_type, "throttle": throttle}}, token=admin)
        return dict(body["data"]["registerEventType"])

    window = fresh_window()
    registered = await register({"limit": 2, "windowSeconds": window})
    assert registered["throttle"] == {
        "limit": 2,
        "windowSeconds": window,
    }
    results = [
        await final(e2e, admin, await send(e2e, settings, type=name, userIds=["u-alice"]))
        for _ in range(4)
    ]
    assert [r["status"] for r in results] == ["SENT", "SENT", "SKIPPED", "SKIPPED"]
    reason = results[2]["timeline"][0]["reason"]
    assert f"throttled: at most 2 '{name}' messages per user every {window} s" == reason

    bad = await register({"limit": 0, "windowSeconds": 60})
    assert bad["field"] == "throttle.limit"


async def test_a_channel_budget_caps_everything_but_critical(e2e, settings, admin, template):
    window = fresh_window()
    made = await e2e(
        SET_BUDGET,
        {"input": {"channel": "IN_APP", "maxDeliveries": 2, "windowSeconds": window}},
        token=admin,
    )
    assert made["data"]["setDeliveryBudget"]["maxDeliveries"] == 2
    refused = await e2e(
        SET_BUDGET,
        {"input": {"channel": "IN_APP", "maxDeliveries": 2, "windowSeconds": 0}},
        token=admin,
    )
    assert refused["data"]["setDeliveryBudget"]["field"] == "input.windowSeconds"
    forbidden = await e2e(
        SET_BUDGET,
        {"input": {"channel": "SMS", "maxDeliveries": 1, "windowSeconds": 60}},
        token=token_for(settings, "manager"),
    )
    assert forbidden["data"]["setDeliveryBudget"]["code"] == "FORBIDDEN"
    user = "u-emil"
    try:
        await eventually(_budget_visible(e2e, admin), timeout=10)
        await asyncio.sleep(BUDGET_CACHE_SECONDS)  # the worker's copy of the budgets
        statuses = []
        for i in range(4):
            event_id = await send(
                e2e,
                settings,
                type=f"budget.type{i}",
                userIds=[user],
                templateSlug=template,
                channels=["IN_APP"],
            )
            statuses.append(await final(e2e, admin, event_id))
        assert [s["status"] for s in statuses] == ["SENT", "SENT", "SKIPPED", "SKIPPED"]
        assert statuses[3]["timeline"][0]["reason"] == (
            f"over the user's in_app budget: at most 2 every {window} s"
        )
        urgent = f"urgent.{uuid.uuid4().hex[:6]}"
        await e2e(
            REGISTER,
            {
                "input": {
                    "name": urgent,
                    "templateSlug": template,
                    "channels": ["IN_APP"],
                    "critical": True,
                }
            },
            token=admin,
        )
        critical = await send(e2e, settings, type=urgent, userIds=[user])
        assert (await final(e2e, admin, critical))["status"] == "SENT"
    finally:
        removed = await e2e(REMOVE_BUDGET, {"c": "IN_APP"}, token=admin)
        assert removed["data"]["removeDeliveryBudget"]["removed"] is True
        await asyncio.sleep(BUDGET_CACHE_SECONDS)  # later tests see no budget


def _budget_visible(e2e: Any, admin: str) -> Any:
    async def check() -> bool:
        body = await e2e("{ deliveryBudgets { channel maxDeliveries } }", token=admin)
        return bool(body["data"]["deliveryBudgets"])

    return check
