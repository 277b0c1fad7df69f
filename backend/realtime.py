"""Live messages for this API process's WebSocket subscribers, from Redis pub/sub.

One pub/sub connection per process. A user's channel is subscribed when the first local
subscriber needs it and unsubscribed when the last one leaves. Each subscriber has a bounded
queue: a client too slow to keep up is dropped (it resumes from its cursor) instead of growing
memory. When the Redis connection drops, a supervisor reconnects, subscribes every channel again
and tells each subscriber to resync from its cursor, so nothing published meanwhile is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import orjson
from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from backend.channels.in_app import user_channel
from backend.errors import HeraldError
from backend.services.inbox import DELIVERY_UPDATES_CHANNEL

log = logging.getLogger(__name__)

RESYNC: dict[str, Any] = {"type": "resync"}


class TooManySubscriptions(HeraldError):
    code = "FORBIDDEN"


OVERFLOW: dict[str, Any] = {"type": "overflow"}


@dataclass(eq=False, slots=True)
class Subscriber:
    """One live subscription's mailbox. Thousands sit idle on one process, so it is lean: a
    list made on the first message and one future while its reader waits (an asyncio.Queue
    with its deques and event, and a wait_for task around it, cost several KB each)."""

    channel: str
    user_id: str | None
    limit: int = 256
    pending: list[dict[str, Any]] | None = None
    waiter: asyncio.Future[None] | None = None
    overflowed: bool = False

    def offer(self, message: dict[str, Any]) -> None:
        if self.overflowed:
            return
        if self.pending is None:
            self.pending = [message]
        elif len(self.pending) < self.limit:
            self.pending.append(message)
        else:
            # Too far behind: what it holds is dropped and the reader told to drop the client
            # (it resumes from its cursor).
            self.overflowed = True
            self.pending = [OVERFLOW]
        self._wake()

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    async def next(self, seconds: float) -> dict[str, Any] | None:
        """The next message, or None when ``seconds`` pass without one."""
        if not self.pending:
            loop = asyncio.get_running_loop()
            self.waiter = loop.create_future()
            timer = loop.call_later(seconds, self._wake)
            try:
                await self.waiter
            finally:
                timer.cancel()
                self.waiter = None
            if not self.pending:
                return None
        message = self.pending.pop(0)
        if not self.pending:
            self.pending = None
        return message


@dataclass
class LiveHub:
    redis_url: str
    queue_size: int = 256
    max_per_user: int = 10
    _subscribers: dict[str, set[Subscriber]] = field(default_factory=lambda: defaultdict(set))
    _per_user: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    _redis: Redis | None = None
    _pubsub: PubSub | None = None
    _task: asyncio.Task[None] | None = None
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    # Channel changes waiting for the task that sends them to Redis in batches: channels
    # whose first local subscriber waits for SUBSCRIBE, and those whose last one left.
    _joining: dict[str, asyncio.Future[None]] = field(default_factory=dict)
    _leaving: set[str] = field(default_factory=set)
    _pump: asyncio.Task[None] | None = None
    _connected: asyncio.Event = field(default_factory=asyncio.Event)
    # Subscriptions catching up from the inbox at once (bounded below the database pool).
    replay_slots: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(6))

    async def start(self) -> None:
        self._redis = Redis.from_url(
            self.redis_url, socket_connect_timeout=2, client_name=f"herald-live-{os.getpid()}"
        )
        self._task = asyncio.create_task(self._supervise())

    async def close(self) -> None:
        if self._pump is not None:
            self._pump.cancel()
        for future in self._joining.values():
            if not future.done():
                future.set_result(None)
        if self._task is not None:
            self._task.cancel()
            # redis-py's get_message can sit out its read timeout despite the cancellation;
            # closing the connection underneath ends the read at once.
            if self._pubsub is not None:
                with contextlib.suppress(RedisError, OSError):
                    await self._pubsub.aclose()
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(self._task, 5)
        if self._redis is not None:
            await self._redis.aclose()

    async def subscribe_user(self, user_id: str) -> Subscriber:
        if self._per_user[user_id] >= self.max_per_user:
            raise TooManySubscriptions(
                f"At most {self.max_per_user} live subscriptions per user; close another first"
            )
        self._per_user[user_id] += 1
        try:
            return await self._subscribe(user_channel(user_id), user_id)
        except BaseException:
            self._release_user(user_id)
            raise

    async def subscribe_deliveries(self) -> Subscriber:
        return await self._subscribe(DELIVERY_UPDATES_CHANNEL, None)

    async def _subscribe(self, channel: str, user_id: str | None) -> Subscriber:
        """Add a subscriber; the first one of a channel returns once Redis has been asked to
        subscribe it (before the caller reads what it missed, so nothing falls in between)."""
        subscriber = Subscriber(channel, user_id, self.queue_size)
        subscribers = self._subscribers[channel]
        first = not subscribers
        subscribers.add(subscriber)
        if first:
            if channel in self._leaving:
                # Its last subscriber left a moment ago; Redis still has it subscribed.
                self._leaving.discard(channel)
            elif channel not in self._joining:
                self._joining[channel] = asyncio.get_running_loop().create_future()
                self._kick()
        joined = self._joining.get(channel)
        if joined is not None:
            try:
                await asyncio.shield(joined)
            except BaseException:  # the socket went away meanwhile
                self._forget(subscriber)
                raise
        return subscriber

    async def unsubscribe(self, subscriber: Subscriber) -> None:
        """Forget the subscriber at once; a channel left without any is unsubscribed from
        Redis in a batch."""
        if self._forget(subscriber) and subscriber.user_id is not None:
            self._release_user(subscriber.user_id)

    def _release_user(self, user_id: str) -> None:
        self._per_user[user_id] -= 1
        if self._per_user[user_id] <= 0:
            del self._per_user[user_id]

    def _forget(self, subscriber: Subscriber) -> bool:
        subscribers = self._subscribers.get(subscriber.channel)
        if subscribers is None or subscriber not in subscribers:
            return False
        subscribers.discard(subscriber)
        if not subscribers:
            del self._subscribers[subscriber.channel]
            self._leaving.add(subscriber.channel)
            self._kick()
        return True

    def _kick(self) -> None:
        if self._pump is None or self._pump.done():
            self._pump = asyncio.create_task(self._send_changes())

    async def _send_changes(self) -> None:
        """Channel changes go to Redis in batches, one task sending them in order. Thousands
        of sockets opening or closing together (clients reconnecting after a network drop)
        must not queue one by one on the lock: an asyncio.Lock's acquire looks at every
        waiter, so such a queue costs the square of its length."""
        await asyncio.sleep(0)  # let the other sockets of this moment join the batch
        while self._joining or self._leaving:  # and those that come while a batch is sent
            async with self._lock:  # against the supervisor's resubscribe
                leaving = [c for c in self._leaving if not self._subscribers.get(c)]
                self._leaving.clear()
                joining, self._joining = self._joining, {}
                joined = [c for c in joining if self._subscribers.get(c)]
                try:
                    if self._pubsub is not None:
                        if leaving:
                            await self._pubsub.unsubscribe(*leaving)
                        if joined:
                            await self._pubsub.subscribe(*joined)
                except (RedisError, OSError) as exc:
                    # The supervisor subscribes every channel again when it reconnects.
                    log.warning(
                        "changing %d live channels failed: %s", len(joined) + len(leaving), exc
                    )
                finally:
                    for future in joining.values():
                        if not future.done():
                            future.set_result(None)

    async def _supervise(self) -> None:
        delay = 0.2
        first = True
        while True:
            try:
                assert self._redis is not None
                pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
                async with self._lock:
                    channels = list(self._subscribers)
                    self._leaving.clear()  # a new connection holds only these
                    # A channel the pub/sub connection must always hold, so that it exists
                    # (and is checked) even with no subscriber.
                    await pubsub.subscribe("herald:live:ping", *channels)
                    self._pubsub = pubsub
                self._connected.set()
                if not first:
                    log.info("live hub reconnected to Redis; %d channels", len(channels))
                    self._broadcast(RESYNC)
                first = False
                delay = 0.2
                await self._read(pubsub)
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError, ConnectionError) as exc:
                if self._connected.is_set():
                    log.warning("live hub lost Redis: %s", exc)
                self._connected.clear()
                old, self._pubsub = self._pubsub, None
                if old is not None:
                    with contextlib.suppress(Exception):
                        await old.aclose()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _read(self, pubsub: PubSub) -> None:
        quiet = 0
        while True:
            message = await pubsub.get_message(timeout=5.0)
            if message is None:
                # Quiet for a while: check the connection is still alive.
                quiet += 1
                if quiet >= 6:
                    quiet = 0
                    await pubsub.ping()
                continue
            quiet = 0
            if message.get("type") != "message":
                continue
            channel = message["channel"]
            if isinstance(channel, bytes):
                channel = channel.decode()
            try:
                data = orjson.loads(message["data"])
            except orjson.JSONDecodeError:
                log.warning("dropping a malformed live message on %s", channel)
                continue
            for subscriber in list(self._subscribers.get(channel, ())):
                subscriber.offer(data)

    def _broadcast(self, message: dict[str, Any]) -> None:
        for subscribers in self._subscribers.values():
            for subscriber in list(subscribers):
                subscriber.offer(message)
