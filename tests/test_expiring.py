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


async def test_keys_callers_choose_cannot_grow_the_cache_without_bound():
    now = [0.0]
    cache: ExpiringCache[str, str | None] = ExpiringCache(
        ttl=5.0, clock=lambda: now[0], max_entries=3
    )

    async def unknown() -> str | None:
        return None

    for name in ("a", "b", "c"):
        await cache.get(name, unknown)
    now[0] = 6.0  # a, b and c have expired
    await cache.get("d", unknown)
    assert len(cache) == 1  # the expired ones made room
    for name in ("e", "f", "g"):
        await cache.get(name, unknown)
    assert len(cache) == 3  # none expired: the oldest (d) made room

    reads = 0

    async def counted() -> str | None:
        nonlocal reads
        reads += 1
        return "row"

    await cache.get("e", counted)
    assert reads == 0  # e was kept, d was not
    await cache.get("d", counted)
    assert reads == 1
