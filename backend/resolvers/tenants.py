"""Tenant resolvers: admins of the install only (a caller bound to a tenant is refused)."""

from __future__ import annotations

from typing import Any

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession
from strawberry.tools import create_type

from backend.auth import ADMINS, Principal
from backend.errors import NotFoundError
from backend.resolvers.units import mutate, read
from backend.schema.context import Context
from backend.schema.tenants import (
    DeletedTenant,
    DeleteTenantResult,
    SaveTenantInput,
    SaveTenantResult,
    Tenant,
)
from backend.services import tenants as tenant_service

Info = strawberry.Info[Context, Any]


@strawberry.field(description="Every tenant, by id. Admins not bound to a tenant only.")
async def tenants(info: Info) -> list[Tenant]:
    async def work(session: AsyncSession, _: Principal) -> list[Tenant]:
        return [Tenant.from_model(t) for t in await tenant_service.list_tenants(session)]

    return await read(info, ADMINS, work)


@strawberry.field(description="One tenant, or null. Admins not bound to a tenant only.")
async def tenant(info: Info, id: strawberry.ID) -> Tenant | None:
    async def work(session: AsyncSession, _: Principal) -> Tenant | None:
        try:
            return Tenant.from_model(await tenant_service.get_tenant(session, tenant_id=str(id)))
        except NotFoundError:
            return None

    return await read(info, ADMINS, work)


@strawberry.mutation(
    description="Create a tenant, or change its name and branding. Admins not bound to a tenant."
)
async def save_tenant(info: Info, input: SaveTenantInput) -> SaveTenantResult:
    data = tenant_service.TenantData(
        id=str(input.id),
        name=input.name,
        logo_url=input.logo_url,
        primary_color=input.primary_color,
    )

    async def work(session: AsyncSession, actor: Principal) -> Tenant:
        return Tenant.from_model(await tenant_service.save_tenant(session, actor=actor, data=data))

    return await mutate(info, ADMINS, work)  # type: ignore[return-value]


@strawberry.mutation(
    description=(
        "Delete a tenant; refused (CONFLICT) while templates, campaigns, API keys or inbox "
        "items name it. Admins not bound to a tenant."
    )
)
async def delete_tenant(info: Info, id: strawberry.ID) -> DeleteTenantResult:
    async def work(session: AsyncSession, actor: Principal) -> DeletedTenant:
        await tenant_service.delete_tenant(session, actor=actor, tenant_id=str(id))
        return DeletedTenant(id=id)

    return await mutate(info, ADMINS, work)  # type: ignore[return-value]


Query = create_type("Query", [tenants, tenant])
Mutation = create_type("Mutation", [save_tenant, delete_tenant])
