"""``/healthz`` asked from another connection while an attack runs: the API's event loop must
keep answering.

The bound is 100 ms. The answers are timed from outside the API, so on a machine busy with
other work they also carry that machine's scheduling delays: the bound grows to ten times
the slowest answer seen in a calm moment just before the attack (``CALM_FACTOR``). An attack
that stalls the event loop holds every answer for as long as the stall (seconds, for the
attacks these suites send), far past either.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

import httpx

HEALTHZ_BOUND = 0.1
CALM_FACTOR = 10
CALM_SAMPLES = 10


@dataclass(frozen=True)
class HealthWatch:
    calm: float  # the slowest answer before the attack
    slowest: float  # the slowest answer while it ran

    @property
    def bound(self) -> float:
        return max(HEALTHZ_BOUND, CALM_FACTOR * self.calm)

    def assert_answered(self) -> None:
        assert self.slowest < self.bound, (
            f"/healthz took {self.slowest * 1000:.0f} ms during the attack (bound "
            f"{self.bound * 1000:.0f} ms; {self.calm * 1000:.0f} ms at most before it)"
        )


async def _answer_time(health: httpx.AsyncClient) -> float:
    started = time.monotonic()
    response = await health.get("/healthz")
    assert response.status_code == 200
    return time.monotonic() - started


async def while_probing(
    health: httpx.AsyncClient, attack: Awaitable[Any], interval: float = 0.01
) -> tuple[Any, HealthWatch]:
    """Run ``attack`` while ``/healthz`` is asked every ``interval`` s: its result and the
    health answers' times (at least one is always measured after the attack started)."""
    calm = 0.0
    for _ in range(CALM_SAMPLES):  # the connection is open before timing starts
        calm = max(calm, await _answer_time(health))
        await asyncio.sleep(interval)
    done = asyncio.Event()
    slowest = 0.0

    async def probe() -> None:
        nonlocal slowest
        while True:
            slowest = max(slowest, await _answer_time(health))
            if done.is_set():
                return
            await asyncio.sleep(interval)

    prober = asyncio.create_task(probe())
    await asyncio.sleep(0.05)
    try:
        result = await attack
    finally:
        done.set()
        await prober
    return result, HealthWatch(calm, slowest)
