"""Queries on tenants."""

from __future__ import annotations

from sqlalchemy import delete, exists, select

from backend.db.models import ApiKey, Campaign, InboxItem, Template, Tenant, UserPreferences
from backend.db.repositories.base import Repository


class TenantRepository(Repository):
    async def get(self, tenant_id: str, *, lock: bool = False) -> Tenant | None:
        return await self.session.get(Tenant, tenant_id, with_for_update=lock)

    async def all(self) -> list[Tenant]:
        return list((await self.session.execute(select(Tenant).order_by(Tenant.id))).scalars())

    async def add(self, tenant: Tenant) -> Tenant:
        self.session.add(tenant)
        await self.session.flush()
        return tenant

    async def users_of(self, tenant_id: str) -> list[str]:
        """What still names the tenant: kinds of rows, in a fixed order."""
        kinds = (
            ("templates", Template.tenant_id),
            ("campaigns", Campaign.tenant_id),
            ("API keys", ApiKey.tenant_id),
            ("inbox items", InboxItem.tenant_id),
        )
        found = []
        for name, column in kinds:
            if (await self.session.execute(select(exists().where(column == tenant_id)))).scalar():
                found.append(name)
        return found

    async def delete(self, tenant: Tenant) -> None:
        """The tenant, and the opt-outs users made within it (theirs, but about it alone)."""
        await self.session.execute(
            delete(UserPreferences).where(UserPreferences.tenant_id == tenant.id)
        )
        await self.session.delete(tenant)
        await self.session.flush()
