"""GraphQL types and inputs for tenants: the products or customers one install sends for."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import strawberry

from backend.db.models import Tenant as TenantModel
from backend.schema.errors import AccessErrors, ConflictError, NotFoundError, ValidationError


@strawberry.type(
    description=(
        "A product or customer this install sends for. Its templates, events, deliveries, "
        "inbox items, campaigns and API keys carry its id; tokens and keys bound to it see "
        "only those. Templates rendered for it see `tenant.name`, `tenant.logo_url` and "
        "`tenant.primary_color`."
    )
)
class Tenant:
    id: strawberry.ID = strawberry.field(description="A slug: `acme`.")
    name: str
    logo_url: str | None
    primary_color: str | None = strawberry.field(description="A colour like `#1a2b3c`.")
    created_by: str | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_model(cls, row: TenantModel) -> Tenant:
        return cls(
            id=strawberry.ID(row.id),
            name=row.name,
            logo_url=row.logo_url,
            primary_color=row.primary_color,
            created_by=row.created_by,
            created_at=row.created_at,
            updated_at=row.updated_at,
        )


@strawberry.input(description="A tenant to create, or the new name and branding of one.")
class SaveTenantInput:
    id: strawberry.ID = strawberry.field(
        description="1-63 lowercase letters, digits and '-'; it cannot change once made."
    )
    name: str = strawberry.field(description="1-200 characters, shown to recipients.")
    logo_url: str | None = strawberry.field(default=None, description="An http(s) URL.")
    primary_color: str | None = strawberry.field(
        default=None, description="A colour like `#1a2b3c`."
    )


@strawberry.type(description="The tenant that was deleted.")
class DeletedTenant:
    id: strawberry.ID


SaveTenantResult = Annotated[
    Tenant | ValidationError | AccessErrors, strawberry.union("SaveTenantResult")
]
DeleteTenantResult = Annotated[
    DeletedTenant | NotFoundError | ConflictError | AccessErrors,
    strawberry.union("DeleteTenantResult"),
]
