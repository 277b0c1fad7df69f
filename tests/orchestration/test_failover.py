"""Provider failover with a real worker: two SMTP relays and two SMS providers, the circuit
breakers shared through Redis, health read over GraphQL."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from tests.conftest import GraphQL
from tests.factories import token_for
from tests.orchestration.conftest import HttpEndpoint, Smtp
from tests.orchestration.helpers import admin, deliver, final_deliveries, send, sms_template
from tests.pipeline.servers import eventually

HEALTH = """{ providerHealth { channel provider priority state consecutiveFailures openUntil
  lastError recentFailures { at error } } }"""


async def health(api: GraphQL) -> dict[str, dict[str, Any]]:
    body = await api(HEALTH, token=admin(api.settings))
    assert "errors" not in body, body
    return {f"{h['channel']}/{h['provider']}": h for h in body["data"]["providerHealth"]}


def mails_for(relay: Smtp, delivery_id: str) -> list[Any]:
    with relay.sink.lock:
        return [m for m in relay.sink.messages if m["X-Herald-Delivery-Id"] == delivery_id]


def texts(provider: HttpEndpoint, code: str, *, answered: int = 200) -> list[dict[str, Any]]:
    return [
        r
        for r in provider.received("/sms")
        if r["answered"] == answered and json.loads(r["body"])["text"] == f"Code {code}"
    ]


async def otp(api: GraphQL, slug: str, user: str, code: str) -> dict[str, Any]:
    """An ``otp`` event by SMS to ``user``: its delivery, once final."""
    [delivery] = await deliver(
        api, type="otp", userIds=[user], templateSlug=slug, channels=["SMS"], payload={"code": code}
    )
    return delivery


async def test_email_moves_to_the_second_relay_and_the_attempts_show_both(
    api: GraphQL, relay_a: Smtp, relay_b: Smtp
) -> None:
    relay_a.sink.refuse_next = 1  # 451: transient
    event_id = await send(api, type="user_registered", userIds=["u-alice"], channels=["EMAIL"])

    [delivery] = await final_deliveries(api, event_id, 1)

    assert delivery["status"] == "SENT"
    assert [(a["number"], a["provider"]) for a in delivery["attempts"]] == [
        (1, "smtp"),
        (1, "relay-b"),
    ]
    assert "451" in delivery["attempts"][0]["error"]
    assert delivery["attempts"][1]["error"] is None
    assert [t["status"] for t in delivery["timeline"]] == ["QUEUED", "SENDING", "SENDING", "SENT"]
    assert "smtp failed" in delivery["timeline"][2]["reason"]
    assert len(mails_for(relay_b, delivery["id"])) == 1
    assert mails_for(relay_a, delivery["id"]) == []


async def test_breaker_opens_skips_the_provider_then_one_probe_closes_it(
    api: GraphQL, sms_a: HttpEndpoint, sms_b: HttpEndpoint
) -> None:
    slug = await sms_template(api)
    sms_a.status = 503
    try:
        # Two failures in a row (the suite's threshold) open the primary's breaker...
        for code in ("1001", "1002"):
            delivery = await otp(api, slug, "u-alice", code)
            assert delivery["status"] == "SENT"
            assert [a["provider"] for a in delivery["attempts"]] == ["sms-webhook", "sms-b"]
            assert "503" in delivery["attempts"][0]["error"]
            assert len(texts(sms_b, code)) == 1

        state = await health(api)
        primary, fallback = state["SMS/sms-webhook"], state["SMS/sms-b"]
        assert (primary["priority"], fallback["priority"]) == (1, 2)
        assert primary["state"] == "OPEN"
        assert primary["consecutiveFailures"] == 2
        assert primary["openUntil"] is not None
        assert "503" in primary["lastError"]
        assert len(primary["recentFailures"]) == 2
        assert fallback["state"] == "CLOSED" and fallback["consecutiveFailures"] == 0

        # ...so the next message goes straight to the fallback: the primary is not asked.
        asked_before = len(sms_a.received("/sms"))
        delivery = await otp(api, slug, "u-alice", "1003")
        assert [a["provider"] for a in delivery["attempts"]] == ["sms-b"]
        assert len(sms_a.received("/sms")) == asked_before
    finally:
        sms_a.status = 200

    # Once the open time (3 s) is over, one send probes the primary; it works: closed again.
    await asyncio.sleep(3.2)
    delivery = await otp(api, slug, "u-alice", "1004")
    assert [a["provider"] for a in delivery["attempts"]] == ["sms-webhook"]
    assert len(texts(sms_a, "1004")) == 1
    state = await health(api)
    assert state["SMS/sms-webhook"]["state"] == "CLOSED"
    assert state["SMS/sms-webhook"]["consecutiveFailures"] == 0


async def test_every_provider_failing_is_retried_then_dead_with_each_try_recorded(
    api: GraphQL, sms_a: HttpEndpoint, sms_b: HttpEndpoint
) -> None:
    slug = await sms_template(api)
    sms_a.status = sms_b.status = 503
    try:
        delivery = await otp(api, slug, "u-bruno", "2001")
    finally:
        sms_a.status = sms_b.status = 200

    assert delivery["status"] == "DEAD"
    attempts = delivery["attempts"]
    # The first attempt tried both providers; later ones found both breakers open (or
    # probed one), and the delivery gave up after HERALD_DELIVERY_MAX_ATTEMPTS (4).
    assert [(a["number"], a["provider"]) for a in attempts[:2]] == [
        (1, "sms-webhook"),
        (1, "sms-b"),
    ]
    assert all(a["error"] for a in attempts)
    assert max(a["number"] for a in attempts) == 4
    assert any("circuit breaker is open" in a["error"] for a in attempts)


async def test_provider_health_is_for_admins_only(api: GraphQL) -> None:
    body = await api(HEALTH, token=token_for(api.settings, "manager"))

    assert body["data"] is None
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"


async def test_breakers_are_shared_by_every_process(api: GraphQL, redis: Any) -> None:
    """What a worker records is what the API reports: the state lives in Redis."""
    await redis.hset(
        "herald:providers:email:relay-b",
        mapping={"failures": 7, "open_until": 0, "last_error": "set by another process"},
    )

    state = await eventually(lambda: health(api))

    assert state["EMAIL/relay-b"]["consecutiveFailures"] == 7
    assert state["EMAIL/relay-b"]["lastError"] == "set by another process"
    assert state["EMAIL/smtp"]["priority"] == 1
