"""Throttles and budgets: how many non-critical messages a user gets.

- A throttle belongs to an event type: at most N messages of that type per user per window.
  One event counts once for a user, whatever its channels.
- A budget belongs to a channel and covers everything non-critical on it, every event type and
  campaign together: at most N deliveries per user per window (say, 5 pushes a day).

Windows are fixed (aligned to the epoch). Each window is a Redis set of what was counted in it
(event ids for throttles, delivery ids for budgets), checked and added to by one Lua script for
the whole batch: counting is atomic across workers, and counting the same event or delivery
again (a re-run dispatch) changes nothing. A delivery over a limit is ``skipped`` with the reason.
If Redis is unavailable the limits are not applied (logged): deliveries go rather than wait.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from backend.auth import Principal
from backend.channels import Channel
from backend.db.models import DeliveryBudget
from backend.db.repositories.limits import BudgetRepository
from backend.errors import ValidationError
from backend.services.expiring import ExpiringCache

log = logging.getLogger(__name__)

MAX_WINDOW_SECONDS = 31 * 86_400
KEY_PREFIX = "herald:limit:"

# KEYS: one set per check. ARGV: per check, the member and the limit, then the TTL of each
# key. Returns 1 (allowed, counted) or 0 (over the limit) per check, in order.
_CHECK = """
local out = {}
local n = #KEYS
for i = 1, n do
  local key = KEYS[i]
  local member = ARGV[2 * i - 1]
  local limit = tonumber(ARGV[2 * i])
  local ttl = tonumber(ARGV[2 * n + i])
  if redis.call('SISMEMBER', key, member) == 1 then
    out[i] = 1
  elseif redis.call('SCARD', key) >= limit then
    out[i] = 0
  else
    redis.call('SADD', key, member)
    redis.call('EXPIRE', key, ttl)
    out[i] = 1
  end
end
return out
"""


@dataclass(frozen=True, slots=True)
class Budget:
    channel: Channel
    max_deliveries: int
    window_seconds: int


def check_window(limit: int, window_seconds: int, *, limit_field: str, window_field: str) -> None:
    if limit < 1:
        raise ValidationError("A limit is at least 1", field=limit_field)
    if not 1 <= window_seconds <= MAX_WINDOW_SECONDS:
        raise ValidationError(f"A window is 1 to {MAX_WINDOW_SECONDS} seconds", field=window_field)


def _window(window_seconds: int, now: float) -> int:
    return int(now // window_seconds)


class Limits:
    """Applies throttles and budgets for one process; budgets are cached ``ttl`` seconds."""

    def __init__(
        self, redis: Redis, sessionmaker: async_sessionmaker[AsyncSession], ttl: float = 5.0
    ) -> None:
        self.redis = redis
        self.sessionmaker = sessionmaker
        # One load at a time: the batches that find it expired wait for the same query.
        self._budgets: ExpiringCache[None, dict[Channel, Budget]] = ExpiringCache(ttl)
        self._script = redis.register_script(_CHECK)

    async def budgets(self) -> dict[Channel, Budget]:
        async def load() -> dict[Channel, Budget]:
            async with self.sessionmaker() as session:
                rows = await BudgetRepository(session).all()
            return {
                Channel(r.channel): Budget(Channel(r.channel), r.max_deliveries, r.window_seconds)
                for r in rows
            }

        return await self._budgets.get(None, load)

    async def over_limit(
        self,
        *,
        event_id: str,
        event_type: str,
        throttle: tuple[int, int] | None,
        deliveries: Sequence[tuple[str, str, Channel]],
    ) -> dict[str, str]:
        """Of ``deliveries`` (delivery id, user id, channel), the ones over a limit, with why."""
        budgets = await self.budgets()
        if not deliveries or (throttle is None and not budgets):
            return {}
        now = time.time()
        keys: list[str] = []
        members: list[str | int] = []
        ttls: list[int] = []
        checks: list[tuple[str, str]] = []  # (kind, user or delivery) per key
        if throttle is not None:
            limit, window = throttle
            for user_id in dict.fromkeys(u for _, u, _ in deliveries):
                keys.append(f"{KEY_PREFIX}t:{event_type}:{window}:{_window(window, now)}:{user_id}")
                members += [event_id, limit]
                ttls.append(window + 60)
                checks.append(("throttle", user_id))
        for delivery_id, user_id, channel in deliveries:
            budget = budgets.get(channel)
            if budget is None:
                continue
            window = budget.window_seconds
            keys.append(f"{KEY_PREFIX}b:{channel.value}:{window}:{_window(window, now)}:{user_id}")
            members += [delivery_id, budget.max_deliveries]
            ttls.append(window + 60)
            checks.append(("budget", delivery_id))
        if not keys:
            return {}
        try:
            allowed = await self._script(keys=keys, args=[*members, *ttls])
        except (RedisError, OSError) as exc:
            log.warning("limits not applied to event %s (Redis unavailable): %s", event_id, exc)
            return {}
        throttled_users = {
            subject
            for (kind, subject), ok in zip(checks, allowed, strict=True)
            if kind == "throttle" and not ok
        }
        over_budget = {
            subject
            for (kind, subject), ok in zip(checks, allowed, strict=True)
            if kind == "budget" and not ok
        }
        reasons: dict[str, str] = {}
        for delivery_id, user_id, channel in deliveries:
            if user_id in throttled_users and throttle is not None:
                reasons[delivery_id] = (
                    f"throttled: at most {throttle[0]} '{event_type}' messages per user "
                    f"every {throttle[1]} s"
                )
            elif delivery_id in over_budget:
                budget = budgets[channel]
                reasons[delivery_id] = (
                    f"over the user's {channel.value} budget: at most "
                    f"{budget.max_deliveries} every {budget.window_seconds} s"
                )
        return reasons


async def list_budgets(session: AsyncSession) -> list[DeliveryBudget]:
    return await BudgetRepository(session).all()


async def set_budget(
    session: AsyncSession,
    *,
    actor: Principal,
    channel: Channel,
    max_deliveries: int,
    window_seconds: int,
) -> DeliveryBudget:
    """Set a channel's per-user budget (it applies within seconds, to non-critical traffic)."""
    check_window(
        max_deliveries,
        window_seconds,
        limit_field="input.maxDeliveries",
        window_field="input.windowSeconds",
    )
    return await BudgetRepository(session).upsert(
        channel=channel.value,
        max_deliveries=max_deliveries,
        window_seconds=window_seconds,
        updated_by=actor.user_id,
        at=datetime.now().astimezone(),
    )


async def remove_budget(session: AsyncSession, *, channel: Channel) -> bool:
    return await BudgetRepository(session).delete(channel.value)
