"""Provider health resolvers (admins)."""

from __future__ import annotations

from typing import Any

import strawberry
from strawberry.tools import create_type

from backend.auth import ADMINS
from backend.schema.context import Context
from backend.schema.providers import ProviderHealth
from backend.services import providers as provider_service

Info = strawberry.Info[Context, Any]


@strawberry.field(
    description=(
        "Each provider of the channels with failover, in priority order, with its circuit "
        "breaker as every worker shares it. Admins."
    )
)
async def provider_health(info: Info) -> list[ProviderHealth]:
    info.context.require(ADMINS)
    clients = info.context.services.clients
    health = await provider_service.provider_health(info.context.settings, clients.redis)
    return [ProviderHealth.from_data(data) for data in health]


Query = create_type("Query", [provider_health])
