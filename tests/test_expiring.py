"""The hot paths' expiring cache (backend.services.expiring): what a failed load leaves, and
the worker's caches built on it."""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import async_sessionmaker

from backend.db.models import Template
from backend.services.deliveries.context import TemplateCache
from backend.services.expiring import ExpiringCache, SingleFlight
from backend.services.limits import Limits
from backend.services.webhooks import WebhookNotifier


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


async def test_forgetting_a_key_cancels_its_load_only():
    """``SingleFlight.forget(key)``: what waited for that key's load loads again; another
    key's load goes on, and its waiters take its answer."""
    flights: SingleFlight[str, str] = SingleFlight()
    gate = asyncio.Event()
    calls: list[str] = []

    def loader(answer: str) -> Any:
        async def load() -> str:
            calls.append(answer)
            await gate.wait()
            return answer

        return load

    first_a = asyncio.create_task(flights.load("a", loader("a-before")))
    first_b = asyncio.create_task(flights.load("b", loader("b")))
    await asyncio.sleep(0)
    waiting_a = asyncio.create_task(flights.load("a", loader("a-after")))
    waiting_b = asyncio.create_task(flights.load("b", loader("b-again")))
    await asyncio.sleep(0)
    flights.forget("a")
    gate.set()
    assert await first_a == ("a-before", False)  # its own answer, not to be kept
    assert await waiting_a == ("a-after", True)
    assert await first_b == ("b", True)
    assert await waiting_b == ("b", False)
    assert sorted(calls) == ["a-after", "a-before", "b"]


async def test_many_keys_load_what_no_other_call_loads_and_reload_what_failed_elsewhere():
    """``SingleFlight.load_many``: keys another call is loading are awaited, not loaded
    again; the ones whose load there failed are loaded here by ``reload``, after this call's
    own; only this call's own loads are answers to keep."""
    flights: SingleFlight[str, str] = SingleFlight()
    gate = asyncio.Event()
    calls: list[tuple[str, list[str]]] = []

    async def failing(keys: list[str]) -> dict[str, str]:
        calls.append(("failing", keys))
        await gate.wait()
        raise ConnectionError("the profile service went away")

    async def load(keys: list[str]) -> dict[str, str]:
        calls.append(("load", keys))
        await gate.wait()
        return {key: f"{key}-loaded" for key in keys}

    async def reload(keys: list[str]) -> dict[str, str]:
        calls.append(("reload", keys))
        return {key: f"{key}-reloaded" for key in keys}

    async def failing_one() -> str:
        calls.append(("failing", ["c"]))
        await gate.wait()
        raise ConnectionError("gone")

    first = asyncio.create_task(flights.load_many(["a", "b"], failing))
    answering = asyncio.create_task(flights.load_many(["d"], load))
    one = asyncio.create_task(flights.load("c", failing_one))
    await asyncio.sleep(0)
    second = asyncio.create_task(flights.load_many(["b", "c", "d", "e", "e"], load, reload=reload))
    await asyncio.sleep(0)
    assert calls == [("failing", ["a", "b"]), ("load", ["d"]), ("failing", ["c"]), ("load", ["e"])]
    gate.set()
    with pytest.raises(ConnectionError):
        await first
    with pytest.raises(ConnectionError):
        await one
    assert await answering == ({"d": "d-loaded"}, {"d"})
    answers, own = await second
    assert answers == {"e": "e-loaded", "d": "d-loaded", "b": "b-reloaded", "c": "c-reloaded"}
    assert own == {"e", "b", "c"}  # d is the other call's answer
    assert calls[4:] == [("reload", ["b", "c"])]


async def test_the_worker_caches_read_an_entry_once_for_every_batch_that_needs_it(engine, redis):
    """A worker's batches ask for the same template, budgets and webhook endpoints at once
    (every batch when an entry expires): one query each, the others wait for its answer. Each
    batch reading it itself took a connection apiece, tens of them at once, and held every
    batch up for tens of milliseconds every few seconds."""
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    async with sessions() as session:
        session.add(Template(slug="cached", name="Cached", description=""))
        await session.commit()
    reads: Counter[str] = Counter()

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        for table in ("templates", "delivery_budgets", "webhook_endpoints"):
            if re.search(rf"\bFROM {table}\b", statement):
                reads[table] += 1

    templates = TemplateCache(ttl=60)
    limits = Limits(redis, sessions, ttl=60)
    webhooks = WebhookNotifier(sessions, queue=_NoWebhooks(), cache_seconds=60)

    async def template() -> Template | None:
        async with sessions() as session:
            return await templates.get(session, "cached")

    event.listen(engine.sync_engine, "before_cursor_execute", count)
    try:
        found = await asyncio.gather(*(template() for _ in range(20)))
        budgets = await asyncio.gather(*(limits.budgets() for _ in range(20)))
        await asyncio.gather(*(webhooks.notify([{"status": "sent"}]) for _ in range(20)))
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", count)
    assert {t.slug for t in found if t is not None} == {"cached"} and None not in found
    assert budgets == [{}] * 20
    assert reads == {"templates": 1, "delivery_budgets": 1, "webhook_endpoints": 1}


class _NoWebhooks:
    async def enqueue(self, message: Any) -> None:
        raise AssertionError("no endpoint is registered")
