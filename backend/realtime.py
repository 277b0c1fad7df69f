"""The transport of live messages to this API process's WebSocket subscribers, from Redis
pub/sub (the messages themselves, their encoding and channels are backend.services.live's).

One pub/sub connection per process. A user's channel is subscribed when the first local
subscriber needs it and unsubscribed when the last one leaves. Each subscriber has a bounded
queue: a client too slow to keep up is dropped (it resumes from its cursor) instead of growing
memory. When the Redis connection drops, a supervisor reconnects, subscribes every channel again
and tells each subscriber to resync from its cursor, so nothing published meanwhile is lost.

The supervisor outlives whatever its read loop meets. A lost connection is logged as a warning,
anything else at error level with its trace; either is counted in
``herald_live_hub_failures`` and the loop starts again with backoff. While the hub holds no
Redis subscription it reports itself not ready (``/readyz``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import defaultdict
from dataclasses import dataclass, field

import orjson
from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from backend.errors import HeraldError
from backend.observability import metrics
from backend.services.live import (
    OVERFLOW,
    RESYNC,
    LiveMessage,
    MalformedLiveMessage,
    decode,
    live_channel,
)

log = logging.getLogger(__name__)

# A channel the pub/sub connection always holds, so that it exists (and is checked) even with
# no subscriber.
PING_CHANNEL = "herald:live:ping"


def fault_channel(pid: int) -> str:
    """The channel on which the test environment makes one API process's hub fail
    (``HERALD_LIVE_HUB_FAULT_INJECTION``); per process, as pub/sub channels are global."""
    return f"herald:live:fault:{pid}"


class InjectedFault(RuntimeError):
    """A failure asked for on the fault channel: it stands for any unexpected exception."""


class TooManySubscriptions(HeraldError):
    code = "FORBIDDEN"


@dataclass(eq=False, slots=True)
class Subscriber:
    """One live subscription's mailbox. Thousands sit idle on one process, so it is lean: a
    list made on the first message and one future while its reader waits (an asyncio.Queue
    with its deques and event, and a wait_for task around it, cost several KB each)."""

    channel: str
    user_id: str | None
    limit: int = 256
    pending: list[LiveMessage] | None = None
    waiter: asyncio.Future[None] | None = None
    overflowed: bool = False

    def offer(self, message: LiveMessage) -> None:
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

    async def next(self, seconds: float) -> LiveMessage | None:
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
    _closing: bool = False
    # A failure met outside the read loop (by the task sending channel changes), for the
    # supervisor to report when it restarts the connection.
    _failure: BaseException | None = None
    # The test environment's fault injection (see fault_channel); None in production.
    fault_channel: str | None = None
    _fault_until: float = 0.0
    # Subscriptions catching up from the inbox at once (bounded below the database pool).
    replay_slots: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(6))

    async def start(self) -> None:
        self._closing = False
        self._redis = Redis.from_url(
            self.redis_url, socket_connect_timeout=2, client_name=f"herald-live-{os.getpid()}"
        )
        self._task = asyncio.create_task(self._supervise())

    async def wait_ready(self, seconds: float) -> None:
        """Return once the hub holds its Redis subscription; ``TimeoutError`` after ``seconds``."""
        await asyncio.wait_for(self._connected.wait(), seconds)

    async def close(self) -> None:
        """Stop the hub, whatever its loop is doing (reading, reconnecting, backing off)."""
        self._closing = True
        self._connected.clear()
        for future in self._joining.values():
            if not future.done():
                future.set_result(None)
        tasks = [t for t in (self._pump, self._task) if t is not None and not t.done()]
        for task in tasks:
            task.cancel()
        # redis-py's get_message can sit out its read timeout despite the cancellation;
        # closing the connection underneath ends the read at once (the loop, seeing the hub
        # closing, then ends whatever the read raises).
        if self._pubsub is not None:
            with contextlib.suppress(Exception):
                await self._pubsub.aclose()
        if tasks:
            await asyncio.wait(tasks, timeout=5)
        for task in tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                log.warning("live hub ended with %r", task.exception())
        if self._redis is not None:
            with contextlib.suppress(Exception):
                await self._redis.aclose()

    async def subscribe_user(self, user_id: str) -> Subscriber:
        if self._per_user[user_id] >= self.max_per_user:
            raise TooManySubscriptions(
                f"At most {self.max_per_user} live subscriptions per user; close another first"
            )
        self._per_user[user_id] += 1
        try:
            return await self._subscribe(live_channel(user_id), user_id)
        except BaseException:
            self._release_user(user_id)
            raise

    async def subscribe_deliveries(self) -> Subscriber:
        return await self._subscribe(live_channel(), None)

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
                pubsub = self._pubsub
                try:
                    if pubsub is not None:
                        if leaving:
                            await pubsub.unsubscribe(*leaving)
                        if joined:
                            await pubsub.subscribe(*joined)
                except Exception as exc:
                    # These channels may not be subscribed: the connection starts again,
                    # subscribing every channel, and every subscriber resyncs.
                    await self._restart(pubsub, exc)
                finally:
                    for future in joining.values():
                        if not future.done():
                            future.set_result(None)

    async def _restart(self, pubsub: PubSub | None, exc: BaseException) -> None:
        """Make the supervisor start the connection again (it reports ``exc``)."""
        if pubsub is None or pubsub is not self._pubsub or self._closing:
            return  # already being replaced
        self._failure = exc
        with contextlib.suppress(Exception):
            await pubsub.aclose()  # the read loop fails at once

    async def _connect(self) -> PubSub:
        assert self._redis is not None
        pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
        try:
            if time.monotonic() < self._fault_until:
                raise InjectedFault("live hub fault injected by the test environment")
            async with self._lock:
                channels = list(self._subscribers)
                self._leaving.clear()  # a new connection holds only these
                fault = [self.fault_channel] if self.fault_channel else []
                await pubsub.subscribe(PING_CHANNEL, *fault, *channels)
                self._pubsub = pubsub
        except BaseException:
            with contextlib.suppress(Exception):
                await pubsub.aclose()
            raise
        return pubsub

    async def _supervise(self) -> None:
        """Hold the Redis subscription: connect, read, and on any failure report it, wait
        (backoff) and start again, until the hub is closed."""
        delay = 0.2
        first = True
        while not self._closing:
            pubsub: PubSub | None = None
            connected_at = 0.0
            try:
                pubsub = await self._connect()
                self._connected.set()
                connected_at = time.monotonic()
                if not first:
                    log.info("live hub subscribed to Redis again; subscribers resync")
                first = False
                # Every subscriber resyncs once the subscription is in place (even the first
                # time: some may have joined while Redis could not be reached): what it reads
                # from its cursor now covers everything published while there was none.
                self._broadcast(RESYNC)
                await self._read(pubsub)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self._closing:
                    break
                self._report(self._failure or exc)
            finally:
                self._connected.clear()
                self._failure = None
                if pubsub is not None:
                    if self._pubsub is pubsub:
                        self._pubsub = None
                    with contextlib.suppress(Exception):
                        await pubsub.aclose()
            if self._closing:
                break
            if connected_at and time.monotonic() - connected_at > 30:
                delay = 0.2  # it held for a while: this is a new failure, not the same one
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    def _report(self, exc: BaseException) -> None:
        if isinstance(exc, RedisError | OSError):
            log.warning("live hub lost its Redis subscription: %s", exc)
            metrics.live_hub_failed("connection")
        else:
            log.error("live hub failed; it starts again", exc_info=exc)
            metrics.live_hub_failed("error")

    async def _read(self, pubsub: PubSub) -> None:
        quiet = 0
        while not self._closing:
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
            if channel == self.fault_channel:
                self._inject_fault(message["data"])
            subscribers = self._subscribers.get(channel)
            if not subscribers:
                continue  # the ping channel, or one whose last subscriber just left
            try:
                # Once for all the channel's subscribers, who are all its user's.
                live = decode(message["data"], user_id=next(iter(subscribers)).user_id)
            except MalformedLiveMessage:
                log.warning("dropping a malformed live message on %s", channel)
                continue
            for subscriber in list(subscribers):
                subscriber.offer(live)

    def _inject_fault(self, raw: bytes) -> None:
        """Fail as an unexpected exception would, and keep failing to connect for the
        ``seconds`` the message asks (so that the hub is seen not ready meanwhile)."""
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            log.warning("dropping a malformed live message on %s", self.fault_channel)
            return
        seconds = float(data.get("seconds", 0)) if isinstance(data, dict) else 0.0
        self._fault_until = time.monotonic() + seconds
        raise InjectedFault("live hub fault injected by the test environment")

    def _broadcast(self, message: LiveMessage) -> None:
        for subscribers in self._subscribers.values():
            for subscriber in list(subscribers):
                subscriber.offer(message)
