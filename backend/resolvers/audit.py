"""Resolvers for the audit log (admins only)."""

from __future__ import annotations

from typing import Any

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession
from strawberry.tools import create_type

from backend.auth import ADMINS, Principal
from backend.resolvers.units import read
from backend.schema.audit import AuditEntry, AuditEntryConnection, AuditFilter
from backend.schema.context import Context
from backend.services import audit as audit_service

Info = strawberry.Info[Context, Any]


@strawberry.field(
    description=(
        "Admin and manager mutations (and refused attempts at them), newest first: who, "
        "what, with which arguments (no secrets or message content), how it ended. Admins."
    )
)
async def audit_log(
    info: Info, filter: AuditFilter | None = None, first: int = 20, after: str | None = None
) -> AuditEntryConnection:
    criteria = audit_service.AuditFilter(
        actor=filter.actor if filter else None,
        operation=filter.operation if filter else None,
        since=filter.since if filter else None,
        until=filter.until if filter else None,
    )

    async def work(session: AsyncSession, _: Principal) -> AuditEntryConnection:
        page = await audit_service.list_entries(session, filter=criteria, first=first, after=after)
        return AuditEntryConnection.from_page(page, AuditEntry.from_model)

    return await read(info, ADMINS, work)


Query = create_type("Query", [audit_log])
