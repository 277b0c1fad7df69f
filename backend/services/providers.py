"""Provider health: each provider of the channels with failover and its circuit breaker."""

from __future__ import annotations

from redis.asyncio import Redis
from redis.exceptions import RedisError

from backend.channels.failover import ProviderHealth
from backend.channels.registry import circuit_breakers, failover_chains
from backend.config import Settings
from backend.errors import UnavailableError


async def provider_health(settings: Settings, redis: Redis) -> list[ProviderHealth]:
    """Each provider of the channels with failover, in priority order, with its breaker as
    every worker shares it through Redis; UnavailableError when Redis does not answer."""
    breakers = circuit_breakers(settings, redis)
    health = []
    try:
        for channel, names in failover_chains(settings).items():
            for priority, name in enumerate(names, start=1):
                health.append(await breakers.health(channel, name, priority=priority))
    except (RedisError, OSError) as exc:
        raise UnavailableError("Redis is unavailable; try again shortly") from exc
    return health
