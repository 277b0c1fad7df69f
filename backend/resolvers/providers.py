"""Provider health resolvers (admins)."""

from __future__ import annotations

from typing import Any

import strawberry
from redis.exceptions import RedisError
from strawberry.tools import create_type

from backend.auth import ADMINS
from backend.channels.registry import circuit_breakers, failover_chains
from backend.errors import UnavailableError
from backend.schema.context import Context
from backend.schema.providers import ProviderHealth

Info = strawberry.Info[Context, Any]


@strawberry.field(
    description=(
        "Each provider of the channels with failover, in priority order, with its circuit "
        "breaker as every worker shares it. Admins."
    )
)
async def provider_health(info: Info) -> list[ProviderHealth]:
    info.context.require(ADMINS)
    settings = info.context.settings
    breakers = circuit_breakers(settings, info.context.services.clients.redis)
    health = []
    try:
        for channel, names in failover_chains(settings).items():
            for priority, name in enumerate(names, start=1):
                data = await breakers.health(channel, name, priority=priority)
                health.append(ProviderHealth.from_data(data))
    except (RedisError, OSError) as exc:
        raise UnavailableError("Redis is unavailable; try again shortly") from exc
    return health


Query = create_type("Query", [provider_health])
