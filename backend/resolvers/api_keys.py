"""API key resolvers: admins only."""

from __future__ import annotations

from typing import Any

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession
from strawberry.tools import create_type

from backend.auth import ADMINS, Principal
from backend.resolvers.units import mutate, read
from backend.schema.api_keys import (
    ApiKey,
    ApiKeyConnection,
    CreateApiKeyInput,
    CreateApiKeyResult,
    CreatedApiKey,
    RevokeApiKeyResult,
)
from backend.schema.context import Context
from backend.services import api_keys as api_key_service

Info = strawberry.Info[Context, Any]


@strawberry.field(description="API keys, newest first; revoked ones when asked. Admins only.")
async def api_keys(
    info: Info, include_revoked: bool = False, first: int = 50, after: str | None = None
) -> ApiKeyConnection:
    async def work(session: AsyncSession, _: Principal) -> ApiKeyConnection:
        page = await api_key_service.list_api_keys(
            session, include_revoked=include_revoked, first=first, after=after
        )
        return ApiKeyConnection.from_page(page, ApiKey.from_model)

    return await read(info, ADMINS, work)


@strawberry.mutation(description="Make an API key for a service; the key is shown once. Admins.")
async def create_api_key(info: Info, input: CreateApiKeyInput) -> CreateApiKeyResult:
    data = api_key_service.ApiKeyData(
        name=input.name, grants=input.grants, expires_at=input.expires_at, tenant_id=input.tenant_id
    )

    async def work(session: AsyncSession, actor: Principal) -> CreatedApiKey:
        created = await api_key_service.create_api_key(session, actor=actor, data=data)
        return CreatedApiKey(api_key=ApiKey.from_model(created.row), secret=created.secret)

    return await mutate(info, ADMINS, work)  # type: ignore[return-value]


@strawberry.mutation(
    description="Revoke an API key: every API process refuses it from now on. Admins only."
)
async def revoke_api_key(info: Info, id: strawberry.ID) -> RevokeApiKeyResult:
    async def work(session: AsyncSession, actor: Principal) -> ApiKey:
        row = await api_key_service.revoke_api_key(session, actor=actor, key_id=str(id))
        return ApiKey.from_model(row)

    result = await mutate(info, ADMINS, work)
    if isinstance(result, ApiKey):
        # Committed: now every process may forget it.
        clients = info.context.services.clients
        clients.api_keys.forget(result.prefix)
        await api_key_service.announce_revoked(clients.redis, prefix=result.prefix)
    return result  # type: ignore[return-value]


Query = create_type("Query", [api_keys])
Mutation = create_type("Mutation", [create_api_key, revoke_api_key])
