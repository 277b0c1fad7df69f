"""Provider failover: several providers for one channel, tried in priority order.

A :class:`FailoverSender` is one :class:`~backend.channels.base.ChannelSender` over an ordered
list of providers (two SMTP relays, two SMS webhooks...). A message goes to the first provider
whose circuit breaker lets it through; a :class:`TransientChannelError` moves it on to the
next one, and each failed try travels with the result (``SendResult.failed_tries``) or the
final error (``ChannelError.tries``) so the delivery's attempts show them. A permanent error
is about the message (a bad address), not the provider: it is raised at once.

Circuit breakers (one per provider): ``breaker_failure_threshold`` transient failures in a row
open it for ``breaker_open_seconds``, during which the provider is skipped; then it is
half-open, and exactly one send (across every worker process) probes it: a success closes the
breaker, a failure opens it again. The state lives in Redis (:class:`RedisCircuitBreakers`), so
every worker process and the API see the same breakers; without Redis (or while Redis is down)
each process keeps its own (:class:`MemoryCircuitBreakers`) or lets sends through.
"""

from __future__ import annotations

import json
import logging
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError

from backend.channels import Channel
from backend.channels.base import (
    ChannelError,
    ChannelSender,
    OutgoingMessage,
    PermanentChannelError,
    ProviderTry,
    SendResult,
    TransientChannelError,
)

log = logging.getLogger(__name__)
RECENT_FAILURES_KEPT = 10
KEY_PREFIX = "herald:providers"


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True, slots=True)
class Permit:
    """May a send use the provider now; ``probe`` when it is the half-open breaker's one try;
    ``clean`` when the breaker had no failures (a success then needs no write)."""

    allowed: bool
    probe: bool = False
    clean: bool = True


@dataclass(frozen=True, slots=True)
class RecentFailure:
    at: datetime
    error: str


@dataclass(frozen=True, slots=True)
class ProviderHealth:
    """A provider's breaker as last recorded."""

    channel: Channel
    provider: str
    priority: int  # 1 is tried first
    state: BreakerState
    consecutive_failures: int = 0
    open_until: datetime | None = None
    last_failure_at: datetime | None = None
    last_error: str | None = None
    last_success_at: datetime | None = None
    recent_failures: tuple[RecentFailure, ...] = ()


class CircuitBreakers(Protocol):
    """Breaker state per (channel, provider)."""

    async def acquire(self, channel: Channel, provider: str) -> Permit: ...

    async def succeeded(self, channel: Channel, provider: str, *, clean: bool) -> None: ...

    async def failed(self, channel: Channel, provider: str, *, error: str) -> None: ...

    async def release_probe(self, channel: Channel, provider: str) -> None: ...

    async def health(self, channel: Channel, provider: str, *, priority: int) -> ProviderHealth: ...


def _state(open_until: float, now: float) -> BreakerState:
    if open_until <= 0:
        return BreakerState.CLOSED
    return BreakerState.OPEN if now < open_until else BreakerState.HALF_OPEN


def _at(value: float | None) -> datetime | None:
    return datetime.fromtimestamp(value, UTC) if value else None


# KEYS: state hash, probe key. ARGV: now, probe ttl (ms).
# Returns {allowed (0/1), probe (0/1), failures}.
_ACQUIRE = """
local open_until = tonumber(redis.call('HGET', KEYS[1], 'open_until') or '0')
local failures = tonumber(redis.call('HGET', KEYS[1], 'failures') or '0')
if open_until <= 0 then return {1, 0, failures} end
if tonumber(ARGV[1]) < open_until then return {0, 0, failures} end
if redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[2]) then return {1, 1, failures} end
return {0, 0, failures}
"""

# KEYS: state hash, probe key, recent list. ARGV: now, threshold, open seconds, error, entry.
_FAILED = """
local failures = redis.call('HINCRBY', KEYS[1], 'failures', 1)
local open_until = tonumber(redis.call('HGET', KEYS[1], 'open_until') or '0')
redis.call('HSET', KEYS[1], 'last_failure_at', ARGV[1], 'last_error', ARGV[4])
if failures >= tonumber(ARGV[2]) or open_until > 0 then
  redis.call('HSET', KEYS[1], 'open_until', tonumber(ARGV[1]) + tonumber(ARGV[3]))
end
redis.call('DEL', KEYS[2])
redis.call('LPUSH', KEYS[3], ARGV[5])
redis.call('LTRIM', KEYS[3], 0, tonumber(ARGV[6]) - 1)
return failures
"""

# KEYS: state hash, probe key. ARGV: now.
_SUCCEEDED = """
redis.call('HSET', KEYS[1], 'failures', 0, 'open_until', 0, 'last_success_at', ARGV[1])
redis.call('DEL', KEYS[2])
return 0
"""


class RedisCircuitBreakers:
    """Breakers shared by every process through Redis: one hash per provider
    (``herald:providers:<channel>:<name>``), a probe key that lets one half-open try through,
    and a list of the latest failures. Each call is one atomic script."""

    def __init__(self, redis: Redis, *, threshold: int, open_seconds: float) -> None:
        self.redis = redis
        self.threshold = threshold
        self.open_seconds = open_seconds
        self._acquire = redis.register_script(_ACQUIRE)
        self._failed = redis.register_script(_FAILED)
        self._succeeded = redis.register_script(_SUCCEEDED)

    @staticmethod
    def _keys(channel: Channel, provider: str) -> tuple[str, str, str]:
        base = f"{KEY_PREFIX}:{channel.value}:{provider}"
        return base, f"{base}:probe", f"{base}:recent"

    async def acquire(self, channel: Channel, provider: str) -> Permit:
        state, probe, _ = self._keys(channel, provider)
        # A probe that never reports back (its worker died) frees the slot after a while.
        ttl_ms = int(max(self.open_seconds, 5.0) * 1000)
        allowed, is_probe, failures = await self._acquire(
            keys=[state, probe], args=[time.time(), ttl_ms]
        )
        return Permit(allowed=bool(allowed), probe=bool(is_probe), clean=int(failures) == 0)

    async def succeeded(self, channel: Channel, provider: str, *, clean: bool) -> None:
        if clean:
            return  # nothing to reset: the happy path costs one round trip, not two
        state, probe, _ = self._keys(channel, provider)
        await self._succeeded(keys=[state, probe], args=[time.time()])

    async def failed(self, channel: Channel, provider: str, *, error: str) -> None:
        state, probe, recent = self._keys(channel, provider)
        now = time.time()
        entry = json.dumps({"at": now, "error": error[:500]})
        await self._failed(
            keys=[state, probe, recent],
            args=[now, self.threshold, self.open_seconds, error[:500], entry, RECENT_FAILURES_KEPT],
        )

    async def release_probe(self, channel: Channel, provider: str) -> None:
        await self.redis.delete(self._keys(channel, provider)[1])

    async def health(self, channel: Channel, provider: str, *, priority: int) -> ProviderHealth:
        state_key, _, recent_key = self._keys(channel, provider)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(state_key)
            pipe.lrange(recent_key, 0, RECENT_FAILURES_KEPT - 1)
            raw, recent = await pipe.execute()
        values = {_text(k): _text(v) for k, v in raw.items()}

        def number(name: str) -> float:
            try:
                return float(values.get(name) or 0)
            except ValueError:
                return 0.0

        open_until = number("open_until")
        failures: list[RecentFailure] = []
        for item in recent:
            try:
                data = json.loads(item)
                failures.append(RecentFailure(at=_at(float(data["at"])), error=str(data["error"])))  # type: ignore[arg-type]
            except (ValueError, KeyError, TypeError):
                continue
        return ProviderHealth(
            channel=channel,
            provider=provider,
            priority=priority,
            state=_state(open_until, time.time()),
            consecutive_failures=int(number("failures")),
            open_until=_at(open_until),
            last_failure_at=_at(number("last_failure_at")),
            last_error=values.get("last_error") or None,
            last_success_at=_at(number("last_success_at")),
            recent_failures=tuple(failures),
        )


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@dataclass
class _MemoryBreaker:
    failures: int = 0
    open_until: float = 0.0
    probing: bool = False
    last_failure_at: float | None = None
    last_error: str | None = None
    last_success_at: float | None = None
    recent: deque[RecentFailure] = field(default_factory=lambda: deque(maxlen=10))


class MemoryCircuitBreakers:
    """The same breakers kept in this process only (no Redis configured)."""

    def __init__(self, *, threshold: int, open_seconds: float) -> None:
        self.threshold = threshold
        self.open_seconds = open_seconds
        self._breakers: dict[tuple[Channel, str], _MemoryBreaker] = {}

    def _get(self, channel: Channel, provider: str) -> _MemoryBreaker:
        return self._breakers.setdefault((channel, provider), _MemoryBreaker())

    async def acquire(self, channel: Channel, provider: str) -> Permit:
        b = self._get(channel, provider)
        if b.open_until <= 0:
            return Permit(allowed=True, clean=b.failures == 0)
        if time.time() < b.open_until or b.probing:
            return Permit(allowed=False)
        b.probing = True
        return Permit(allowed=True, probe=True, clean=False)

    async def succeeded(self, channel: Channel, provider: str, *, clean: bool) -> None:
        b = self._get(channel, provider)
        b.failures, b.open_until, b.probing = 0, 0.0, False
        b.last_success_at = time.time()

    async def failed(self, channel: Channel, provider: str, *, error: str) -> None:
        b = self._get(channel, provider)
        now = time.time()
        b.failures += 1
        b.last_failure_at, b.last_error = now, error
        b.recent.appendleft(RecentFailure(at=datetime.fromtimestamp(now, UTC), error=error))
        if b.failures >= self.threshold or b.open_until > 0:
            b.open_until = now + self.open_seconds
        b.probing = False

    async def release_probe(self, channel: Channel, provider: str) -> None:
        self._get(channel, provider).probing = False

    async def health(self, channel: Channel, provider: str, *, priority: int) -> ProviderHealth:
        b = self._get(channel, provider)
        return ProviderHealth(
            channel=channel,
            provider=provider,
            priority=priority,
            state=_state(b.open_until, time.time()),
            consecutive_failures=b.failures,
            open_until=_at(b.open_until),
            last_failure_at=_at(b.last_failure_at),
            last_error=b.last_error,
            last_success_at=_at(b.last_success_at),
            recent_failures=tuple(b.recent),
        )


def _carry_gone(error: ChannelError, gone: dict[str, str]) -> None:
    """Add the addresses earlier providers reported gone to ``error``'s own."""
    if gone:
        reasons = {**gone, **error.expired_reasons}
        error.expired_reasons, error.expired_endpoints = reasons, tuple(reasons)


@dataclass(frozen=True, slots=True)
class Provider:
    """One provider in a failover chain: its name (as attempts and health show it) and
    its sender."""

    name: str
    sender: ChannelSender


class FailoverSender:
    """A :class:`ChannelSender` that tries its providers in order (see the module docstring)."""

    def __init__(
        self, channel: Channel, providers: Sequence[Provider], breakers: CircuitBreakers
    ) -> None:
        if not providers:
            raise ValueError("a failover sender needs at least one provider")
        self.channel = channel
        self.providers = tuple(providers)
        self.breakers = breakers

    async def start(self) -> None:
        for provider in self.providers:
            await provider.sender.start()

    async def close(self) -> None:
        for provider in self.providers:
            try:
                await provider.sender.close()
            except Exception:
                log.exception("closing the %s provider %s failed", self.channel, provider.name)

    async def send(self, message: OutgoingMessage) -> SendResult:
        """Send through the first provider that takes the message; raise the last transient
        error (its ``tries`` the failures before it) when none did."""
        tries: list[ProviderTry] = []
        last: TransientChannelError | None = None
        skipped: list[str] = []
        # Addresses a provider reported gone before another one was tried: still gone, and
        # still to be disabled, whatever the next provider answers.
        gone: dict[str, str] = {}
        for provider in self.providers:
            permit = await self._acquire(provider.name)
            if not permit.allowed:
                skipped.append(provider.name)
                continue
            try:
                result = await provider.sender.send(message)
            except TransientChannelError as exc:
                await self._report(self.breakers.failed, provider.name, error=exc.message)
                log.warning("%s provider %s failed: %s", self.channel, provider.name, exc.message)
                gone.update(exc.expired_reasons)
                last = TransientChannelError(
                    exc.message, provider=provider.name, retry_after=exc.retry_after
                )
                tries.append(ProviderTry(provider.name, exc.message, datetime.now(UTC)))
                continue
            except PermanentChannelError as exc:
                # About this message, not the provider's health: no failover.
                if permit.probe:
                    await self._report(self.breakers.release_probe, provider.name)
                exc.provider = provider.name
                exc.tries = tuple(tries)
                _carry_gone(exc, gone)
                raise
            await self._report(self.breakers.succeeded, provider.name, clean=permit.clean)
            if gone:
                reasons = {**gone, **result.expired_reasons}
                result = replace(result, expired_endpoints=tuple(reasons), expired_reasons=reasons)
            return replace(result, provider=provider.name, failed_tries=tuple(tries))
        if last is None:
            raise TransientChannelError(
                f"every {self.channel.value} provider's circuit breaker is open "
                f"({', '.join(skipped)})",
                provider=self.providers[0].name,
            )
        # The last failure is the error itself; the ones before it travel with it.
        last.tries = tuple(tries[:-1])
        _carry_gone(last, gone)
        raise last

    async def health(self) -> list[ProviderHealth]:
        return [
            await self.breakers.health(self.channel, p.name, priority=i)
            for i, p in enumerate(self.providers, start=1)
        ]

    async def _acquire(self, provider: str) -> Permit:
        try:
            return await self.breakers.acquire(self.channel, provider)
        except (RedisError, OSError) as exc:
            # Health tracking down must not stop deliveries: let the send through.
            log.warning("circuit breaker unavailable, trying %s anyway: %s", provider, exc)
            return Permit(allowed=True)

    async def _report(self, call: Any, provider: str, **kwargs: Any) -> None:
        try:
            await call(self.channel, provider, **kwargs)
        except (RedisError, OSError) as exc:
            log.warning("could not record %s provider %s health: %s", self.channel, provider, exc)
