"""The hot paths' expiring cache (backend.services.expiring): what a failed load leaves."""

from __future__ import annotations

import asyncio

import pytest

from backend.services.expiring import ExpiringCache


async def test_a_failed_load_is_not_shared_and_not_kept():
    cache: ExpiringCache[str, str] = ExpiringCache(ttl=5.0)
    calls: list[str] = []
    gate = asyncio.Event()

    async def failing() -> str:
        calls.append("failing")
        await gate.wait()
        raise ConnectionError("PostgreSQL went away")

    async def working() -> str:
        calls.append("working")
        return "row"

    loader = asyncio.create_task(cache.get("k", failing))
    await asyncio.sleep(0)
    waiters = [asyncio.create_task(cache.get("k", working)) for _ in range(3)]
    await asyncio.sleep(0)
    assert calls == ["failing"]  # the waiters wait for the load in flight
    gate.set()
    with pytest.raises(ConnectionError):
        await loader
    # Each waiter loads for itself, as it would without the cache (the error is its loader's).
    assert await asyncio.gather(*waiters) == ["row"] * 3
    assert calls.count("working") >= 1
    seen = len(calls)
    assert await cache.get("k", working) == "row"
    assert len(calls) == seen  # an answer was kept


async def test_an_answer_keep_refuses_is_returned_but_read_again():
    cache: ExpiringCache[str, str | None] = ExpiringCache(ttl=5.0)
    calls = 0

    async def missing() -> str | None:
        nonlocal calls
        calls += 1
        return None

    for _ in range(2):
        assert await cache.get("slug", missing, keep=lambda v: v is not None) is None
    assert calls == 2
