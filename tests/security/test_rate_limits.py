"""Rate limits: token buckets in the real Redis, on event ingestion and WebSocket connects."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import websockets
from redis.asyncio import Redis
from websockets.exceptions import ConnectionClosed

from backend.services import rate_limits
from backend.services.rate_limits import RateLimit
from tests.conftest import LiveServer, app_client, start_live_server, stop_live_server
from tests.factories import token_for
from tests.security.conftest import SECURITY_REDIS_URL, security_settings

SEND = """
mutation($input: EventInput!) {
  sendEvent(input: $input) {
    __typename
    ... on Error { code message field }
    ... on RateLimitedError { retryAfterSeconds }
  }
}
"""
SEND_MANY = """
mutation($inputs: [EventInput!]!) {
  sendEvents(inputs: $inputs) {
    __typename
    ... on Error { code message field }
    ... on RateLimitedError { retryAfterSeconds }
  }
}
"""
# An event no rule knows and no template names: refused as VALIDATION after the rate limit.
EVENT = {"type": "nothing_registered", "userIds": ["u1"]}


@pytest.fixture
async def redis() -> AsyncIterator[Redis]:
    client = Redis.from_url(SECURITY_REDIS_URL)
    yield client
    await client.aclose()


def _limit(rate: float, burst: int) -> RateLimit:
    return RateLimit(f"test-{uuid.uuid4().hex[:8]}", rate, burst)


async def test_bucket_allows_the_burst_then_says_when_to_retry(redis):
    limit = _limit(rate=2.0, burst=3)
    decisions = [await rate_limits.take(redis, limit=limit, subject="a") for _ in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert 0.3 < decisions[3].retry_after_seconds <= 0.5
    await asyncio.sleep(0.55)
    assert (await rate_limits.take(redis, limit=limit, subject="a")).allowed
    # Another subject has its own bucket.
    assert (await rate_limits.take(redis, limit=limit, subject="b")).allowed


async def test_bucket_is_atomic_under_concurrency(redis):
    limit = _limit(rate=0.001, burst=10)
    decisions = await asyncio.gather(
        *(rate_limits.take(redis, limit=limit, subject="racer") for _ in range(60))
    )
    assert sum(d.allowed for d in decisions) == 10


async def test_bucket_keys_expire(redis):
    limit = _limit(rate=10.0, burst=5)
    await rate_limits.take(redis, limit=limit, subject="short-lived")
    ttl = await redis.pttl(rate_limits.bucket_key(limit, "short-lived"))
    assert 0 < ttl <= 1_500


async def test_redis_down_fails_open_with_a_warning(caplog):
    unreachable = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
    rate_limits._last_warning = 0.0
    try:
        with caplog.at_level(logging.WARNING, logger="backend.services.rate_limits"):
            decision = await rate_limits.take(unreachable, limit=_limit(1.0, 1), subject="x")
    finally:
        await unreachable.aclose()
    assert decision.allowed
    assert "not enforced: Redis unavailable" in caplog.text


async def _script_calls(redis: Redis) -> int:
    stats = await redis.info("commandstats")
    return sum(
        int(stats.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in ("evalsha", "eval")
    )


async def test_leases_spare_redis_and_never_exceed_the_limit_across_processes(redis):
    """Two processes' leases, spending concurrently from one bucket that does not refill
    within the test: together they never get more than the burst, and they get nearly all of
    it while asking Redis far less than once per request."""
    limit = _limit(rate=0.001, burst=1000)
    processes = [rate_limits.TokenLeases(), rate_limits.TokenLeases()]
    calls_before = await _script_calls(redis)

    async def caller(leases: rate_limits.TokenLeases) -> int:
        allowed = 0
        for _ in range(700):
            allowed += (await leases.take(redis, limit=limit, subject="busy")).allowed
        return allowed

    granted = await asyncio.gather(*(caller(p) for p in processes for _ in range(4)))
    calls = await _script_calls(redis) - calls_before
    # At most one lease per process (burst // LEASE_SHARE = 20 tokens) is left unspent.
    assert 1000 - 2 * 20 <= sum(granted) <= 1000
    # 5,600 requests; one script call per request would be 5,600.
    assert calls < 400, calls


async def test_leases_keep_small_bursts_exact(redis):
    limit = _limit(rate=2.0, burst=3)
    leases = rate_limits.TokenLeases()
    decisions = [await leases.take(redis, limit=limit, subject="a") for _ in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert 0.3 < decisions[3].retry_after_seconds <= 0.5


async def test_an_unspent_lease_lapses_and_the_next_is_smaller(redis):
    now = [0.0]
    leases = rate_limits.TokenLeases(lease_seconds=1.0, clock=lambda: now[0])
    limit = _limit(rate=0.001, burst=500)  # leases of up to 10 tokens
    for _ in range(20):  # busy: leases grow 1, 2, 4, 8, 10
        assert (await leases.take(redis, limit=limit, subject="a")).allowed
    remaining = float(await redis.hget(rate_limits.bucket_key(limit, "a"), "tokens"))
    held = 500 - 20 - round(remaining)
    assert 0 < held <= 10  # taken from the bucket, not yet spent
    now[0] += 1.5  # the lease lapses: its tokens are not spent any more
    assert (await leases.take(redis, limit=limit, subject="a")).allowed
    after = float(await redis.hget(rate_limits.bucket_key(limit, "a"), "tokens"))
    assert round(remaining) - round(after) <= 5  # a lease half the size of the last one


async def test_leases_fail_open_and_hold_nothing_when_redis_is_down():
    unreachable = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
    leases = rate_limits.TokenLeases()
    try:
        decisions = [
            await leases.take(unreachable, limit=_limit(1.0, 1000), subject="x") for _ in range(2)
        ]
    finally:
        await unreachable.aclose()
    assert all(d.allowed for d in decisions)


@pytest.fixture(scope="module")
def limited_settings() -> Any:
    return security_settings(event_rate_per_second=0.5, event_rate_burst=3)


async def test_send_event_is_rate_limited_per_caller(engine, limited_settings):
    caller = token_for(limited_settings, "service", sub=f"svc-{uuid.uuid4().hex[:8]}")
    other = token_for(limited_settings, "service", sub=f"svc-{uuid.uuid4().hex[:8]}")
    headers = {"Authorization": f"Bearer {caller}"}
    async with app_client(limited_settings) as client:

        async def send(token_headers: dict[str, str]) -> dict[str, Any]:
            response = await client.post(
                "/graphql",
                json={"query": SEND, "variables": {"input": EVENT}},
                headers=token_headers,
            )
            result: dict[str, Any] = response.json()["data"]["sendEvent"]
            return result

        first = [await send(headers) for _ in range(3)]
        refused = await send(headers)
        elsewhere = await send({"Authorization": f"Bearer {other}"})
    assert [r["code"] for r in first] == ["VALIDATION"] * 3
    assert refused["__typename"] == "RateLimitedError"
    assert refused["code"] == "RATE_LIMITED"
    assert 1.5 < refused["retryAfterSeconds"] <= 2.0
    assert "retry in" in refused["message"]
    assert elsewhere["code"] == "VALIDATION"


async def test_send_events_charges_one_token_per_event(engine, limited_settings):
    caller = {
        "Authorization": f"Bearer {token_for(limited_settings, 'service', sub=uuid.uuid4().hex)}"
    }
    async with app_client(limited_settings) as client:

        async def send_many(count: int) -> dict[str, Any]:
            response = await client.post(
                "/graphql",
                json={"query": SEND_MANY, "variables": {"inputs": [EVENT] * count}},
                headers=caller,
            )
            result: dict[str, Any] = response.json()["data"]["sendEvents"]
            return result

        too_big = await send_many(4)
        batch = await send_many(2)
        refused = await send_many(2)
    assert too_big == {
        "__typename": "ValidationError",
        "code": "VALIDATION",
        "message": "At most 3 events per call under this caller's rate limit",
        "field": "inputs",
    }
    assert batch["__typename"] == "EventBatch"
    assert refused["__typename"] == "RateLimitedError"
    assert refused["retryAfterSeconds"] > 1.0


async def test_a_rate_of_zero_turns_the_limit_off(engine):
    settings = security_settings(event_rate_per_second=0, event_rate_burst=1)
    headers = {"Authorization": f"Bearer {token_for(settings, 'service', sub='unlimited')}"}
    async with app_client(settings) as client:
        codes = []
        for _ in range(5):
            response = await client.post(
                "/graphql", json={"query": SEND, "variables": {"input": EVENT}}, headers=headers
            )
            codes.append(response.json()["data"]["sendEvent"]["code"])
    assert codes == ["VALIDATION"] * 5


# --- WebSocket connects per IP ------------------------------------------------------------


@pytest.fixture(scope="module")
def ws_limited_server(engine: Any) -> Iterator[LiveServer]:
    server = start_live_server(
        {
            "HERALD_REDIS_URL": SECURITY_REDIS_URL,
            "HERALD_WS_CONNECT_RATE_PER_SECOND": "0.2",
            "HERALD_WS_CONNECT_BURST": "3",
        }
    )
    yield server
    stop_live_server(server)


async def _connect_and_init(server: LiveServer, token: str) -> str | int:
    async with websockets.connect(
        server.ws_url, subprotocols=["graphql-transport-ws"], origin=server.url, open_timeout=5
    ) as ws:
        try:
            await ws.send(
                json.dumps(
                    {"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}}
                )
            )
            message = json.loads(await asyncio.wait_for(ws.recv(), 5))
        except ConnectionClosed as closed:
            assert closed.rcvd is not None
            assert "retry in" in closed.rcvd.reason
            return closed.rcvd.code
        return str(message["type"])


@pytest.fixture
async def fresh_local_bucket(redis: Redis, sec_settings: Any) -> AsyncIterator[None]:
    # Buckets are per IP across every API process sharing Redis: start and leave this
    # machine's full, so other WebSocket tests on 127.0.0.1 are not refused.
    key = rate_limits.bucket_key(rate_limits.ws_connect_limit(sec_settings), "127.0.0.1")
    await redis.delete(key)
    yield
    await redis.delete(key)


async def test_websocket_connects_are_limited_per_ip(
    ws_limited_server, sec_settings, fresh_local_bucket
):
    token = token_for(sec_settings, "user", sub="ws-rate")
    outcomes = [await _connect_and_init(ws_limited_server, token) for _ in range(5)]
    assert outcomes == ["connection_ack"] * 3 + [4429, 4429]
    # The HTTP API is not affected by the WebSocket limit.
    import httpx

    async with httpx.AsyncClient(base_url=ws_limited_server.url) as client:
        assert (await client.get("/healthz")).status_code == 200
