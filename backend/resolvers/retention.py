"""Forgetting a user (admins, and the auth service with its ``service`` token)."""

from __future__ import annotations

from typing import Any

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession
from strawberry.tools import create_type

from backend.auth import FORGET_USERS, Principal
from backend.resolvers.units import mutate
from backend.schema.context import Context
from backend.schema.retention import DeleteRecipientResult, RecipientDeleted
from backend.services import retention as retention_service

Info = strawberry.Info[Context, Any]


@strawberry.mutation(
    description="Forget a user: delete their profile, addresses, inbox, preferences, waiting "
    "digests and scheduled sends, take them out of campaign audiences, and scrub the delivery "
    "history (statuses stay for counts, under a one-way hash of the id; content and addresses "
    "go). Idempotent. Admins, and the auth service (role `service`) when an account is deleted."
)
async def delete_recipient(info: Info, user_id: strawberry.ID) -> DeleteRecipientResult:
    services = info.context.services
    clients = services.clients
    key = services.settings.forget_key

    async def work(session: AsyncSession, _: Principal) -> RecipientDeleted:
        forgotten = await retention_service.forget_user(
            session,
            history=clients.history,
            redis=clients.redis,
            user_id=str(user_id),
            hash_key=key,
        )
        return RecipientDeleted.from_forgotten(forgotten)

    # The audit entry names the hash, never the id being forgotten.
    hashed = retention_service.hash_user_id(str(user_id), key=key)
    return await mutate(info, FORGET_USERS, work, audit_arguments={"userId": hashed})  # type: ignore[return-value]


Mutation = create_type("Mutation", [delete_recipient])
