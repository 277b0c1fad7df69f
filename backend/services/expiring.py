"""A per-process cache whose entries live a few seconds, for the hot paths that read rows a
manager rarely changes (event rules, templates' channels, tenants).

One load per key is in flight at a time. When an entry expires under load, the request that
finds it first reads PostgreSQL and the others arriving meanwhile wait for its answer, instead
of each checking out a connection (beyond the pool's size: opening one) for the same row. A
waiter whose loader failed or was cancelled (its client went away) loads the entry itself, as
it would without the cache: an error is never shared, only an answer.

Keys can come from callers (an event names its type, known or not), so the cache holds at
most ``max_entries``: past that, expired entries go first, then the oldest."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class SingleFlight(Generic[K, V]):
    """One load per key in flight: a request that finds one running for its key waits for its
    answer instead of loading again. A waiter whose loader failed or was cancelled loads for
    itself (an error is never shared, only an answer); ``forget`` cancels the loads in flight,
    whose answers then go to their own callers only."""

    def __init__(self) -> None:
        self._loading: dict[K, asyncio.Future[V]] = {}

    def forget(self, key: K | None = None) -> None:
        """Cancel the load in flight for ``key`` (None: every load)."""
        for loading in list(self._loading) if key is None else [key]:
            flight = self._loading.pop(loading, None)
            if flight is not None:
                flight.cancel()

    async def load(self, key: K, load: Callable[[], Awaitable[V]]) -> tuple[V, bool]:
        """``key``'s answer, and whether it is this call's own load, not forgotten meanwhile
        (an answer to keep)."""

        async def load_one(keys: list[K]) -> dict[K, V]:
            return {key: await load()}

        answers, own = await self.load_many([key], load_one)
        return answers[key], key in own

    async def load_many(
        self,
        keys: Sequence[K],
        load: Callable[[list[K]], Awaitable[dict[K, V]]],
        *,
        reload: Callable[[list[K]], Awaitable[dict[K, V]]] | None = None,
    ) -> tuple[dict[K, V], set[K]]:
        """Every key's answer, and the keys this call loaded itself, not forgotten meanwhile
        (answers to keep). The keys no other call is loading are loaded here by one call of
        ``load`` (the keys to their answers); the others' answers are awaited. A key whose
        load elsewhere failed or was cancelled is loaded here after them, by ``reload``
        (default ``load``): say, one that first reads what the failed load did keep."""
        loop = asyncio.get_running_loop()
        unique = list(dict.fromkeys(keys))
        theirs = {
            key: flight
            for key in unique
            if (flight := self._loading.get(key)) is not None and flight.get_loop() is loop
        }
        flights = {key: loop.create_future() for key in unique if key not in theirs}
        self._loading.update(flights)
        answers: dict[K, V] = {}
        try:
            if flights:
                answers = await load(list(flights))
        except BaseException:
            for flight in flights.values():
                flight.cancel()  # whoever waits loads for itself
            raise
        finally:
            for key, flight in flights.items():
                if self._loading.get(key) is flight:
                    del self._loading[key]
        own: set[K] = set()
        for key, flight in flights.items():
            if not flight.cancelled():  # cancelled: forgotten while it loaded
                flight.set_result(answers[key])
                own.add(key)
        if not theirs:
            return answers, own
        await asyncio.wait(theirs.values())  # this call's cancellation leaves them be
        answers.update((key, f.result()) for key, f in theirs.items() if not f.cancelled())
        again = [key for key, flight in theirs.items() if flight.cancelled()]
        if again:
            more, more_own = await self.load_many(again, reload or load, reload=reload)
            answers.update(more)
            own |= more_own
        return answers, own


class ExpiringCache(Generic[K, V]):
    def __init__(
        self,
        ttl: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        *,
        max_entries: int = 10_000,
    ) -> None:
        self.ttl = ttl
        self.clock = clock
        self.max_entries = max_entries
        self._entries: dict[K, tuple[float, V]] = {}
        self._flights: SingleFlight[K, V] = SingleFlight()

    def clear(self) -> None:
        """Forget every entry. A load in flight read the old state: its answer still goes to
        the requests that asked, but is neither kept nor given to later ones."""
        self._entries.clear()
        self._flights.forget()

    async def get(
        self, key: K, load: Callable[[], Awaitable[V]], *, keep: Callable[[V], bool] | None = None
    ) -> V:
        """The entry for ``key``, loaded by ``load`` when missing or expired; an answer for
        which ``keep`` is false is returned but not cached."""
        now = self.clock()
        hit = self._entries.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        value, own = await self._flights.load(key, load)
        if own and (keep is None or keep(value)):
            self._keep(key, (now + self.ttl, value))
        return value

    def _keep(self, key: K, entry: tuple[float, V]) -> None:
        # Re-inserted last: entries stand in the order their loads ended, which is (all living
        # ttl seconds from their load's start) the order they expire in, but for a slow load
        # that ended after a later one. Room is made from the front: expired entries up to the
        # first living one, then the oldest, until there is room.
        self._entries.pop(key, None)
        if len(self._entries) >= self.max_entries:
            now = self.clock()
            left, dropped = len(self._entries), []
            for oldest, (expires, _) in self._entries.items():
                if left < self.max_entries and expires > now:
                    break
                dropped.append(oldest)
                left -= 1
            for oldest in dropped:
                del self._entries[oldest]
        self._entries[key] = entry

    def __len__(self) -> int:
        return len(self._entries)
