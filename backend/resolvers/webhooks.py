"""Resolvers for status webhooks and provider health: admins only."""

from __future__ import annotations

from typing import Any

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession
from strawberry.tools import create_type

from backend.auth import ADMINS, Principal
from backend.resolvers.units import mutate, read
from backend.schema.context import Context
from backend.schema.webhooks import (
    DeleteWebhookEndpointResult,
    WebhookDelivery,
    WebhookDeliveryConnection,
    WebhookEndpoint,
    WebhookEndpointDeleted,
    WebhookEndpointInput,
    WebhookEndpointPatch,
    WebhookEndpointResult,
)
from backend.services import webhooks as webhook_service

Info = strawberry.Info[Context, Any]


def _endpoint_data(
    input: WebhookEndpointInput | WebhookEndpointPatch,
) -> webhook_service.EndpointData:
    return webhook_service.EndpointData(
        url=input.url,
        secret=input.secret,
        description=input.description,
        event_types=input.event_types,
        statuses=input.statuses,
        engagements=input.engagements,
        active=input.active,
        legacy_signature=input.legacy_signature,
    )


@strawberry.mutation(
    description=(
        "Register an endpoint for delivery status changes (signed POSTs, retried with "
        "backoff). Admins."
    )
)
async def create_webhook_endpoint(info: Info, input: WebhookEndpointInput) -> WebhookEndpointResult:
    data = _endpoint_data(input)
    settings = info.context.settings

    async def work(session: AsyncSession, actor: Principal) -> WebhookEndpoint:
        row = await webhook_service.create_endpoint(
            session, actor=actor, settings=settings, data=data
        )
        return WebhookEndpoint.from_model(row)

    return await mutate(info, ADMINS, work)  # type: ignore[return-value]


@strawberry.mutation(description="Change an endpoint; fields left out stay as they are. Admins.")
async def update_webhook_endpoint(
    info: Info, id: strawberry.ID, input: WebhookEndpointPatch
) -> WebhookEndpointResult:
    data = _endpoint_data(input)
    settings = info.context.settings

    async def work(session: AsyncSession, actor: Principal) -> WebhookEndpoint:
        row = await webhook_service.update_endpoint(
            session, actor=actor, settings=settings, endpoint_id=str(id), data=data
        )
        return WebhookEndpoint.from_model(row)

    return await mutate(info, ADMINS, work)  # type: ignore[return-value]


@strawberry.mutation(description="Delete an endpoint and its delivery log. Admins.")
async def delete_webhook_endpoint(info: Info, id: strawberry.ID) -> DeleteWebhookEndpointResult:
    async def work(session: AsyncSession, actor: Principal) -> WebhookEndpointDeleted:
        deleted = await webhook_service.delete_endpoint(session, actor=actor, endpoint_id=str(id))
        return WebhookEndpointDeleted(id=strawberry.ID(deleted))

    return await mutate(info, ADMINS, work)  # type: ignore[return-value]


@strawberry.field(description="Registered status webhook endpoints, oldest first. Admins.")
async def webhook_endpoints(info: Info) -> list[WebhookEndpoint]:
    async def work(session: AsyncSession, _: Principal) -> list[WebhookEndpoint]:
        rows = await webhook_service.list_endpoints(session)
        return [WebhookEndpoint.from_model(row) for row in rows]

    return await read(info, ADMINS, work)


@strawberry.field(
    description="An endpoint's delivery attempts (one per POST), newest first. Admins."
)
async def webhook_deliveries(
    info: Info, endpoint_id: strawberry.ID, first: int = 20, after: str | None = None
) -> WebhookDeliveryConnection:
    async def work(session: AsyncSession, _: Principal) -> WebhookDeliveryConnection:
        page = await webhook_service.list_deliveries(
            session, endpoint_id=str(endpoint_id), first=first, after=after
        )
        return WebhookDeliveryConnection.from_page(page, WebhookDelivery.from_model)

    return await read(info, ADMINS, work)


Query = create_type("Query", [webhook_endpoints, webhook_deliveries])
Mutation = create_type(
    "Mutation", [create_webhook_endpoint, update_webhook_endpoint, delete_webhook_endpoint]
)
