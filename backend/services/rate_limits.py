"""Rate limits: token buckets in Redis, one per caller and limit.

A bucket holds up to ``burst`` tokens and refills at ``rate`` tokens a second; a request takes
``cost`` tokens or is refused with the time until enough are back. Taking is one Lua script run
atomically by Redis (read, refill, take, write, expire), so concurrent API processes share one
bucket per caller without races, and the clock is Redis's own (``TIME``), not each process's.

**Fails open.** When Redis cannot be reached (down, timing out), the request is let through and a
warning is logged (at most once every ``WARN_EVERY_SECONDS``): a rate limit protects the platform,
and losing Redis must not stop event ingestion, which does not otherwise need it. A rate of 0
turns a limit off without touching Redis.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import time
from dataclasses import dataclass

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


def event_limit(settings: Settings) -> RateLimit:
    return RateLimit("events", settings.event_rate_per_second, settings.event_rate_burst)


def ws_connect_limit(settings: Settings) -> RateLimit:
    return RateLimit("ws-connect", settings.ws_connect_rate_per_second, settings.ws_connect_burst)


async def check_event_rate(redis: Redis, *, settings: Settings, caller: str, events: int) -> None:
    """Charge ``events`` to the caller's ingestion bucket, or raise :class:`RateLimitedError`.

    A batch larger than the burst can never pass, so it is refused as a ValidationError that
    says how large a batch may be. Fails open when Redis is down (module docstring).
    """
    limit = event_limit(settings)
    if not limit.enabled:
        return
    if events > limit.burst:
        raise ValidationError(
            f"At most {limit.burst} events per call under this caller's rate limit",
            field="inputs",
        )
    decision = await take(redis, limit=limit, subject=caller, cost=max(events, 1))
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
