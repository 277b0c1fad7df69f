"""Resolvers for status webhooks and provider health: admins only."""

from __future__ import annotations

from typing import Any

import strawberry
from redis.exceptions import RedisError
from sqlalchemy.ext.asyncio import AsyncSession

from backend.auth import Principal, Role
from backend.channels.registry import circuit_breakers, failover_chains
from backend.errors import UnavailableError
from backend.resolvers.units import mutate, read
from backend.schema.common import PageInfo
from backend.schema.context import Context
from backend.schema.webhooks import (
    DeleteWebhookEndpointResult,
    ProviderHealth,
    WebhookDelivery,
    WebhookDeliveryConnection,
    WebhookDeliveryEdge,
    WebhookEndpoint,
    WebhookEndpointDeleted,
    WebhookEndpointInput,
    WebhookEndpointPatch,
    WebhookEndpointResult,
)
from backend.services import webhooks as webhook_service

Info = strawberry.Info[Context, Any]
ADMINS = frozenset({Role.ADMIN})


async def create_webhook_endpoint(info: Info, input: WebhookEndpointInput) -> WebhookEndpointResult:
    data = webhook_service.EndpointData(
        url=input.url,
        secret=input.secret,
        description=input.description,
        event_types=input.event_types,
        statuses=input.statuses,
        active=input.active,
    )
    settings = info.context.settings

    async def work(session: AsyncSession, actor: Principal) -> WebhookEndpoint:
        row = await webhook_service.create_endpoint(
            session, actor=actor, settings=settings, data=data
        )
        return WebhookEndpoint.from_model(row)

    return await mutate(info, ADMINS, work)  # type: ignore[return-value]


async def update_webhook_endpoint(
    info: Info, id: strawberry.ID, input: WebhookEndpointPatch
) -> WebhookEndpointResult:
    data = webhook_service.EndpointData(
        url=input.url,
        secret=input.secret,
        description=input.description,
        event_types=input.event_types,
        statuses=input.statuses,
        active=input.active,
    )
    settings = info.context.settings

    async def work(session: AsyncSession, actor: Principal) -> WebhookEndpoint:
        row = await webhook_service.update_endpoint(
            session, actor=actor, settings=settings, endpoint_id=str(id), data=data
        )
        return WebhookEndpoint.from_model(row)

    return await mutate(info, ADMINS, work)  # type: ignore[return-value]


async def delete_webhook_endpoint(info: Info, id: strawberry.ID) -> DeleteWebhookEndpointResult:
    async def work(session: AsyncSession, actor: Principal) -> WebhookEndpointDeleted:
        deleted = await webhook_service.delete_endpoint(session, actor=actor, endpoint_id=str(id))
        return WebhookEndpointDeleted(id=strawberry.ID(deleted))

    return await mutate(info, ADMINS, work)  # type: ignore[return-value]


async def webhook_endpoints(info: Info) -> list[WebhookEndpoint]:
    async def work(session: AsyncSession, _: Principal) -> list[WebhookEndpoint]:
        rows = await webhook_service.list_endpoints(session)
        return [WebhookEndpoint.from_model(row) for row in rows]

    return await read(info, ADMINS, work)


async def webhook_deliveries(
    info: Info, endpoint_id: strawberry.ID, first: int = 20, after: str | None = None
) -> WebhookDeliveryConnection:
    async def work(session: AsyncSession, _: Principal) -> WebhookDeliveryConnection:
        page = await webhook_service.list_deliveries(
            session, endpoint_id=str(endpoint_id), first=first, after=after
        )
        return WebhookDeliveryConnection(
            edges=[
                WebhookDeliveryEdge(cursor=c, node=WebhookDelivery.from_model(row))
                for c, row in page.items
            ],
            page_info=PageInfo(has_next_page=page.has_next_page, end_cursor=page.end_cursor),
        )

    return await read(info, ADMINS, work)


async def provider_health(info: Info) -> list[ProviderHealth]:
    info.context.require(ADMINS)
    settings = info.context.settings
    breakers = circuit_breakers(settings, info.context.services.extras.get("redis"))
    health = []
    try:
        for channel, names in failover_chains(settings).items():
            for priority, name in enumerate(names, start=1):
                data = await breakers.health(channel, name, priority=priority)
                health.append(ProviderHealth.from_data(data))
    except (RedisError, OSError) as exc:
        raise UnavailableError("Redis is unavailable; try again shortly") from exc
    return health
