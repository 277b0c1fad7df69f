"""A per-process cache whose entries live a few seconds, for the hot paths that read rows a
manager rarely changes (event rules, templates' channels, tenants).

One load per key is in flight at a time. When an entry expires under load, the request that
finds it first reads PostgreSQL and the others arriving meanwhile wait for its answer, instead
of each checking out a connection (beyond the pool's size: opening one) for the same row. A
waiter whose loader failed or was cancelled (its client went away) loads the entry itself, as
it would without the cache: an error is never shared, only an answer."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class ExpiringCache(Generic[K, V]):
    def __init__(self, ttl: float = 5.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.clock = clock
        self._entries: dict[K, tuple[float, V]] = {}
        self._loading: dict[K, asyncio.Future[V]] = {}

    def clear(self) -> None:
        """Forget every entry. A load in flight read the old state: its answer still goes to
        the requests that asked, but is neither kept nor given to later ones."""
        self._entries.clear()
        for flight in self._loading.values():
            flight.cancel()
        self._loading.clear()

    async def get(
        self, key: K, load: Callable[[], Awaitable[V]], *, keep: Callable[[V], bool] | None = None
    ) -> V:
        """The entry for ``key``, loaded by ``load`` when missing or expired; an answer for
        which ``keep`` is false is returned but not cached."""
        now = self.clock()
        hit = self._entries.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        loop = asyncio.get_running_loop()
        flight = self._loading.get(key)
        if flight is not None and flight.get_loop() is loop:
            await asyncio.wait([flight])  # this request's cancellation leaves the flight be
            if not flight.cancelled():
                return flight.result()
        flight = loop.create_future()
        self._loading[key] = flight
        try:
            value = await load()
        except BaseException:
            flight.cancel()
            raise
        finally:
            if self._loading.get(key) is flight:
                del self._loading[key]
        if not flight.cancelled():
            flight.set_result(value)
            if keep is None or keep(value):
                self._entries[key] = (now + self.ttl, value)
        return value
