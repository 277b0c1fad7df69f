"""Email suppression list resolvers (admins, managers)."""

from __future__ import annotations

from typing import Any

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession
from strawberry.tools import create_type

from backend.auth import MANAGE_TEMPLATES, Principal
from backend.resolvers.units import mutate, read
from backend.schema.context import Context
from backend.schema.suppressions import (
    EmailSuppression,
    EmailSuppressionConnection,
    EmailSuppressionFilter,
    EmailSuppressionRemoved,
    RemoveEmailSuppressionResult,
)
from backend.services import suppressions as suppression_service
from backend.services.suppressions import SuppressionKind

Info = strawberry.Info[Context, Any]


@strawberry.field(
    description=(
        "Email addresses that are no longer sent to (hard bounces, spam complaints), newest "
        "first. Admins, managers."
    )
)
async def email_suppressions(
    info: Info,
    filter: EmailSuppressionFilter | None = None,
    first: int = 20,
    after: str | None = None,
) -> EmailSuppressionConnection:
    wanted = filter or EmailSuppressionFilter()

    async def work(session: AsyncSession, _: Principal) -> EmailSuppressionConnection:
        page = await suppression_service.list_suppressions(
            session,
            address_contains=wanted.address_contains,
            kind=SuppressionKind(wanted.kind.value) if wanted.kind is not None else None,
            first=first,
            after=after,
        )
        return EmailSuppressionConnection.from_page(page, EmailSuppression.from_model)

    return await read(info, MANAGE_TEMPLATES, work)


@strawberry.mutation(
    description="Take an address off the suppression list so email reaches it again. "
    "Admins, managers."
)
async def remove_email_suppression(info: Info, address: str) -> RemoveEmailSuppressionResult:
    async def work(session: AsyncSession, _: Principal) -> EmailSuppressionRemoved:
        removed = await suppression_service.remove_suppression(session, address=address)
        return EmailSuppressionRemoved(address=removed)

    return await mutate(info, MANAGE_TEMPLATES, work)  # type: ignore[return-value]


Query = create_type("Query", [email_suppressions])
Mutation = create_type("Mutation", [remove_email_suppression])
