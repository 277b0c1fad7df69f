"""Rate limits: token buckets in Redis, one per caller and limit.

A bucket holds up to ``burst`` tokens and refills at ``rate`` tokens a second; a request takes
``cost`` tokens or is refused with the time until enough are back. Taking is one Lua script run
atomically by Redis (read, refill, take, write, expire), so concurrent API processes share one
bucket per caller without races, and the clock is Redis's own (``TIME``), not each process's.

**Fails open.** When Redis cannot be reached (down, timing out), the request is let through and a
warning is logged (at most once every ``WARN_EVERY_SECONDS``): a rate limit protects the platform,
and losing Redis must not stop event ingestion, which does not otherwise need it. A rate of 0
turns a limit off without touching Redis.

**Leases.** Event ingestion takes its tokens through :class:`TokenLeases`: a caller sending
many events a second takes them from its bucket a few at a time and spends them in memory, so
most ``sendEvent`` calls cost no Redis round trip (measured: the round trip was a fifth of the
API's CPU per ``sendEvent``). Tokens are taken from the shared bucket before they are spent, so
a limit is never exceeded across processes; tokens a process took and did not spend within
``lease_seconds`` lapse, which can only make the limit stricter, by at most one lease per
process. A caller whose lease lapses unspent gets smaller ones again, down to a single token:
the exact, one-call-per-request behaviour, which small bursts (under ``LEASE_SHARE`` tokens)
always keep. A refused caller is refused in memory until the bucket's retry time has passed, so
a caller over its limit does not cost Redis a call per refused request either.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from redis.asyncio import Redis
from redis.exceptions import NoScriptError, RedisError

from backend.config import Settings
from backend.errors import RateLimitedError, ValidationError

log = logging.getLogger(__name__)

KEY_PREFIX = "herald:rate:"
REDIS_TIMEOUT_SECONDS = 1.0
WARN_EVERY_SECONDS = 10.0

# KEYS[1] bucket; ARGV rate (tokens/s), burst, cost. Returns {allowed, retry_after, tokens_left}
# as strings (Redis truncates Lua numbers to integers).
_TAKE = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1])
local at = tonumber(state[2])
if tokens == nil or at == nil then
  tokens = burst
  at = now
end
if now > at then
  tokens = math.min(burst, tokens + (now - at) * rate)
end
local allowed = 0
local retry = 0
if tokens >= cost then
  tokens = tokens - cost
  allowed = 1
else
  retry = (cost - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return {allowed, tostring(retry), tostring(tokens)}
"""
_TAKE_SHA = hashlib.sha1(_TAKE.encode()).hexdigest()  # noqa: S324 - Redis names scripts by SHA-1


@dataclass(frozen=True, slots=True)
class RateLimit:
    """``rate`` tokens a second, up to ``burst`` saved up. A rate of 0 means no limit."""

    name: str
    rate: float
    burst: int

    @property
    def enabled(self) -> bool:
        return self.rate > 0


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    retry_after_seconds: float
    remaining: float


_last_warning = 0.0


def _warn_open(limit: RateLimit, exc: BaseException) -> None:
    global _last_warning
    now = time.monotonic()
    if now - _last_warning >= WARN_EVERY_SECONDS:
        _last_warning = now
        log.warning(
            "rate limit %r not enforced: Redis unavailable (%s); letting requests through",
            limit.name,
            type(exc).__name__,
        )


def bucket_key(limit: RateLimit, subject: str) -> str:
    # Hashed: subjects are caller-chosen text (user ids, addresses) of any length.
    digest = hashlib.sha256(subject.encode()).hexdigest()[:32]
    return f"{KEY_PREFIX}{limit.name}:{digest}"


async def take(redis: Redis, *, limit: RateLimit, subject: str, cost: int = 1) -> Decision:
    """Take ``cost`` tokens from ``subject``'s bucket for ``limit``.

    Never raises for Redis trouble: it fails open (see the module docstring).
    """
    if not limit.enabled:
        return Decision(allowed=True, retry_after_seconds=0.0, remaining=math.inf)
    key = bucket_key(limit, subject)
    args = (limit.rate, limit.burst, cost)
    # asyncio.timeout, not wait_for: on Python 3.11 wait_for runs the call in a task of its
    # own, a measurable part of every sendEvent.
    try:
        try:
            async with asyncio.timeout(REDIS_TIMEOUT_SECONDS):
                reply = await redis.evalsha(_TAKE_SHA, 1, key, *args)
        except NoScriptError:
            async with asyncio.timeout(REDIS_TIMEOUT_SECONDS):
                reply = await redis.eval(_TAKE, 1, key, *args)
    except (RedisError, OSError, TimeoutError) as exc:
        _warn_open(limit, exc)
        return Decision(allowed=True, retry_after_seconds=0.0, remaining=math.inf)
    allowed, retry, remaining = reply
    return Decision(
        allowed=int(allowed) == 1,
        retry_after_seconds=float(retry),
        remaining=float(remaining),
    )


# A lease is at most this share of the burst (and never less than what the request costs).
LEASE_SHARE = 50
LEASE_SECONDS = 1.0
MAX_LEASED_SUBJECTS = 10_000


@dataclass(slots=True)
class _Lease:
    tokens: int = 0
    lapses_at: float = 0.0
    size: int = 1
    refill: asyncio.Future[None] | None = field(default=None)
    # After a refusal, requests costing as much or more are refused here until then.
    refused_until: float = 0.0
    refused_cost: int = 0


class TokenLeases:
    """One process's tokens taken ahead from one limit's buckets (module docstring: Leases)."""

    def __init__(
        self, *, lease_seconds: float = LEASE_SECONDS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.lease_seconds = lease_seconds
        self.clock = clock
        self._leases: dict[tuple[str, str], _Lease] = {}

    def _lease(self, limit: RateLimit, subject: str) -> _Lease:
        key = (limit.name, subject)
        lease = self._leases.get(key)
        if lease is None:
            if len(self._leases) >= MAX_LEASED_SUBJECTS:
                now = self.clock()
                for stale in [
                    k for k, v in self._leases.items() if v.lapses_at <= now and v.refill is None
                ]:
                    del self._leases[stale]
            lease = self._leases[key] = _Lease()
        return lease

    async def take(
        self, redis: Redis, *, limit: RateLimit, subject: str, cost: int = 1
    ) -> Decision:
        """Spend ``cost`` tokens of ``subject``'s lease, taking a new lease from the shared
        bucket when this one is spent or has lapsed. Fails open, as :func:`take` does."""
        if not limit.enabled:
            return Decision(allowed=True, retry_after_seconds=0.0, remaining=math.inf)
        lease = self._lease(limit, subject)
        while lease.refill is not None:  # another request of this caller is taking a lease
            await asyncio.shield(lease.refill)
        now = self.clock()
        if lease.lapses_at > now and lease.tokens >= cost:
            lease.tokens -= cost
            return Decision(allowed=True, retry_after_seconds=0.0, remaining=lease.tokens)
        if lease.refused_until > now and cost >= lease.refused_cost:
            return Decision(
                allowed=False, retry_after_seconds=lease.refused_until - now, remaining=0.0
            )
        # Spent before it lapsed: the caller is busy, so the next lease is twice the size.
        # Lapsed with tokens left: half the size.
        busy = lease.lapses_at > now
        cap = max(cost, limit.burst // LEASE_SHARE)
        size = min(cap, max(cost, lease.size * 2 if busy else lease.size // 2))
        lease.refill = asyncio.get_running_loop().create_future()
        try:
            decision = await take(redis, limit=limit, subject=subject, cost=size)
            if not decision.allowed and size > cost:
                size = cost
                decision = await take(redis, limit=limit, subject=subject, cost=cost)
            lease.size = size
            if decision.allowed and decision.remaining != math.inf:
                # What is left of a lease that has not lapsed is kept, and lapses with the new one.
                lease.tokens = (lease.tokens if busy else 0) + size - cost
                lease.lapses_at = self.clock() + self.lease_seconds
            else:  # refused, or let through with Redis down: nothing is held
                lease.tokens = 0
                lease.lapses_at = 0.0
            if decision.allowed:
                lease.refused_until = 0.0
            else:
                lease.refused_until = self.clock() + decision.retry_after_seconds
                lease.refused_cost = cost
            return decision
        finally:
            lease.refill.set_result(None)
            lease.refill = None


def event_limit(settings: Settings) -> RateLimit:
    return RateLimit("events", settings.event_rate_per_second, settings.event_rate_burst)


def ws_connect_limit(settings: Settings) -> RateLimit:
    return RateLimit("ws-connect", settings.ws_connect_rate_per_second, settings.ws_connect_burst)


async def check_event_rate(
    redis: Redis,
    *,
    settings: Settings,
    caller: str,
    events: int,
    leases: TokenLeases,
) -> None:
    """Charge ``events`` to the caller's ingestion bucket, or raise :class:`RateLimitedError`.

    A batch larger than the burst can never pass, so it is refused as a ValidationError that
    says how large a batch may be. Fails open when Redis is down (module docstring). The
    tokens come from ``leases``, the process's own (module docstring: Leases).
    """
    limit = event_limit(settings)
    if not limit.enabled:
        return
    if events > limit.burst:
        raise ValidationError(
            f"At most {limit.burst} events per call under this caller's rate limit",
            field="inputs",
        )
    decision = await leases.take(redis, limit=limit, subject=caller, cost=max(events, 1))
    if not decision.allowed:
        wait = math.ceil(decision.retry_after_seconds * 1000) / 1000
        raise RateLimitedError(
            f"Too many events: at most {limit.rate:g} a second (bursts of {limit.burst}) per "
            f"caller; retry in {wait:g} s",
            retry_after_seconds=wait,
        )


async def allow_ws_connect(redis: Redis, *, settings: Settings, address: str) -> Decision:
    """Whether one more WebSocket connection from ``address`` is allowed now."""
    return await take(redis, limit=ws_connect_limit(settings), subject=address)
