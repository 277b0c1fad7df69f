"""Tenants: one Herald install sending for several products or customers.

A tenant is an id (a slug such as ``acme``), a name and branding (``logo_url``,
``primary_color``) that templates rendered for it see as ``tenant``. Templates, events (their
deliveries and inbox items), campaigns and API keys carry a nullable ``tenant_id``; null means
shared (templates) or "no tenant", which is all a single-product install ever has.

Callers are bound to a tenant by their credential, never by an argument: a token's
``HERALD_JWT_TENANT_CLAIM`` claim or an API key made for the tenant (``Principal.tenant_id``).
A bound caller:

- reads only its tenant's rows (and the shared templates, which it may use but not change);
- writes only into its tenant: what it creates is its tenant's whatever it asks, and naming
  another tenant is FORBIDDEN;
- finds another tenant's rows missing (NOT_FOUND, or null), so ids cannot be probed;
- is refused operations that are not scoped by tenant at all (settings, tenants, API keys,
  event types, topics...): see ``backend/resolvers/units.py``.

A caller that is not bound (an admin of the install, a service of a single-product install)
sees everything and may name any tenant.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from backend.auth import TENANT_ID_RE, Principal
from backend.db.models import Tenant
from backend.db.repositories.tenants import TenantRepository
from backend.errors import ConflictError, ForbiddenError, NotFoundError, ValidationError
from backend.services.expiring import ExpiringCache

COLOR_RE = re.compile(r"^#[0-9a-fA-F]{6}$")
MAX_URL = 2000


@dataclass(frozen=True, slots=True)
class TenantData:
    id: str
    name: str
    logo_url: str | None = None
    primary_color: str | None = None


@dataclass(frozen=True, slots=True)
class Branding:
    """What templates see as ``tenant``. Every key is always there (the sandbox's undefined is
    strict), an empty string where there is no value (no tenant, or no logo): a shared
    template says ``{% if tenant.name %}``, and nothing prints "None" to a recipient."""

    id: str | None = None
    name: str | None = None
    logo_url: str | None = None
    primary_color: str | None = None

    @classmethod
    def of(cls, tenant: Tenant | None) -> Branding:
        if tenant is None:
            return NO_BRANDING
        return cls(tenant.id, tenant.name, tenant.logo_url, tenant.primary_color)

    def to_context(self) -> dict[str, Any]:
        return {
            "id": self.id or "",
            "name": self.name or "",
            "logo_url": self.logo_url or "",
            "primary_color": self.primary_color or "",
        }


NO_BRANDING = Branding()


def visible(actor: Principal, tenant_id: str | None) -> bool:
    """Whether ``actor`` may see a row of ``tenant_id``: an unbound caller sees every row, a
    bound one its tenant's only."""
    return actor.tenant_id is None or tenant_id == actor.tenant_id


def read_scope(actor: Principal) -> str | None:
    """The tenant every read of ``actor`` is filtered by; None: no filter."""
    return actor.tenant_id


def named_tenant(actor: Principal, requested: str | None, *, field: str = "tenantId") -> str | None:
    """The tenant ``actor`` works in when it names ``requested``: a bound caller's own
    (naming another one is FORBIDDEN), an unbound caller's ``requested`` (None: none)."""
    if actor.tenant_id is None:
        return requested
    if requested is not None and requested != actor.tenant_id:
        raise ForbiddenError("You are bound to another tenant", field=field)
    return actor.tenant_id


async def tenant_for_write(
    session: AsyncSession,
    *,
    actor: Principal,
    requested: str | None,
    field: str = "tenantId",
    cache: TenantCache | None = None,
) -> str | None:
    """The tenant a row ``actor`` creates belongs to: a bound caller's own tenant, whatever it
    asked (naming another one is FORBIDDEN); an unbound caller's ``requested`` tenant, or
    None. The tenant must exist (NOT_FOUND). ``cache`` spares the query on hot paths."""
    requested = named_tenant(actor, requested, field=field)
    if requested is None:
        return None
    if TENANT_ID_RE.match(requested):
        if cache is not None:
            if (await cache.branding(session, requested)).id is not None:
                return requested
        elif await TenantRepository(session).get(requested) is not None:
            return requested
    raise NotFoundError(f"No tenant with id '{requested}'", field=field)


def _check(data: TenantData) -> None:
    if not TENANT_ID_RE.match(data.id):
        raise ValidationError(
            "A tenant id is 1-63 lowercase letters, digits and '-', a letter or digit first",
            field="id",
        )
    if not data.name.strip() or len(data.name) > 200:
        raise ValidationError("A tenant's name is 1-200 characters", field="name")
    if data.logo_url is not None and (
        not data.logo_url.startswith(("https://", "http://")) or len(data.logo_url) > MAX_URL
    ):
        raise ValidationError(
            f"logoUrl is an http(s) URL of at most {MAX_URL} characters", field="logoUrl"
        )
    if data.primary_color is not None and not COLOR_RE.match(data.primary_color):
        raise ValidationError("primaryColor is a colour like #1a2b3c", field="primaryColor")


async def list_tenants(session: AsyncSession) -> list[Tenant]:
    """Every tenant, by id."""
    return await TenantRepository(session).all()


async def get_tenant(session: AsyncSession, *, tenant_id: str) -> Tenant:
    tenant = await TenantRepository(session).get(tenant_id)
    if tenant is None:
        raise NotFoundError(f"No tenant with id '{tenant_id}'", field="id")
    return tenant


async def save_tenant(session: AsyncSession, *, actor: Principal, data: TenantData) -> Tenant:
    """Create the tenant ``data.id``, or change its name and branding."""
    _check(data)
    repo = TenantRepository(session)
    now = datetime.now(UTC)
    tenant = await repo.get(data.id, lock=True)
    if tenant is None:
        tenant = Tenant(id=data.id, created_by=actor.user_id, created_at=now)
        tenant.name = data.name.strip()
        tenant.logo_url = data.logo_url
        tenant.primary_color = data.primary_color
        tenant.updated_at = now
        return await repo.add(tenant)
    tenant.name = data.name.strip()
    tenant.logo_url = data.logo_url
    tenant.primary_color = data.primary_color
    tenant.updated_at = now
    await session.flush()
    return tenant


async def delete_tenant(session: AsyncSession, *, actor: Principal, tenant_id: str) -> None:
    """Delete a tenant no row names any more (CONFLICT lists what still does). Its deliveries
    in the history keep its id: they are a record of what was sent."""
    repo = TenantRepository(session)
    tenant = await repo.get(tenant_id, lock=True)
    if tenant is None:
        raise NotFoundError(f"No tenant with id '{tenant_id}'", field="id")
    users = await repo.users_of(tenant_id)
    if users:
        raise ConflictError(
            f"Tenant '{tenant_id}' still has {', '.join(users)}; delete them first", field="id"
        )
    await repo.delete(tenant)


class TenantCache:
    """Tenants by id for a few seconds, for the hot paths (event ingestion checks that a
    tenant exists; rendering needs its branding): a branding edit reaches messages within
    ``ttl`` seconds."""

    def __init__(self, ttl: float = 5.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._entries: ExpiringCache[str, Branding | None] = ExpiringCache(ttl, clock)

    async def branding(self, session: AsyncSession, tenant_id: str | None) -> Branding:
        """The tenant's branding; empty without a tenant, or for one deleted meanwhile."""
        if tenant_id is None:
            return NO_BRANDING

        async def load() -> Branding | None:
            row = await TenantRepository(session).get(tenant_id)
            return Branding.of(row) if row is not None else None

        return await self._entries.get(tenant_id, load) or NO_BRANDING
