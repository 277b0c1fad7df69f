"""GraphQL types and inputs for API keys: credentials admins make for services."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import strawberry

from backend.db.models import ApiKey as ApiKeyModel
from backend.schema.common import Connection
from backend.schema.errors import AccessErrors, ConflictError, NotFoundError, ValidationError


@strawberry.type(
    description=(
        "A service's API key, sent as `Authorization: Bearer hk_...` or `X-Api-Key: hk_...` "
        "(on a WebSocket: `authorization` or `apiKey` in `connection_init`). The key itself "
        "is shown once, by `createApiKey`."
    )
)
class ApiKey:
    id: strawberry.ID
    name: str = strawberry.field(description="The service the key was made for.")
    prefix: str = strawberry.field(
        description="The key's first characters (`hk_` and ten more), to tell keys apart."
    )
    roles: list[str] = strawberry.field(description="Roles the key holds (`service`).")
    scopes: list[str] = strawberry.field(
        description="Narrower grants: `events:send`, `templates:read`, `event_types:read`."
    )
    created_by: str
    created_at: datetime
    expires_at: datetime | None = strawberry.field(description="Null: the key never expires.")
    last_used_at: datetime | None = strawberry.field(
        description="When the key was last used, to the minute (written at most once a minute)."
    )
    revoked_at: datetime | None
    revoked_by: str | None
    tenant_id: str | None = strawberry.field(
        default=None,
        description="The tenant the key is bound to: it sees and changes only that tenant's data.",
    )

    @classmethod
    def from_model(cls, row: ApiKeyModel) -> ApiKey:
        return cls(
            id=strawberry.ID(str(row.id)),
            name=row.name,
            prefix=row.prefix,
            roles=list(row.roles),
            scopes=list(row.scopes),
            created_by=row.created_by,
            created_at=row.created_at,
            expires_at=row.expires_at,
            last_used_at=row.last_used_at,
            revoked_at=row.revoked_at,
            revoked_by=row.revoked_by,
            tenant_id=row.tenant_id,
        )


@strawberry.type(description="API keys, newest first.")
class ApiKeyConnection(Connection[ApiKey]):
    pass


@strawberry.type(description="A new API key, and the key itself: copy it now, it is not kept.")
class CreatedApiKey:
    api_key: ApiKey
    secret: str = strawberry.field(description="The whole key (`hk_...`); shown only this once.")


@strawberry.input(description="A new API key.")
class CreateApiKeyInput:
    name: str = strawberry.field(
        description="The service it is for: 1-100 letters, digits, spaces, '_', '.', '-'."
    )
    grants: list[str] = strawberry.field(
        description=(
            "What it may do: the role `service` (everything a service may), or scopes "
            "`events:send`, `templates:read`, `event_types:read`."
        )
    )
    expires_at: datetime | None = strawberry.field(
        default=None, description="When it stops working; null: never."
    )
    tenant_id: str | None = strawberry.field(
        default=None,
        description="Bind the key to this tenant: it then sees and changes only its data.",
    )


CreateApiKeyResult = Annotated[
    CreatedApiKey | ValidationError | NotFoundError | AccessErrors,
    strawberry.union("CreateApiKeyResult"),
]
RevokeApiKeyResult = Annotated[
    ApiKey | ValidationError | NotFoundError | ConflictError | AccessErrors,
    strawberry.union("RevokeApiKeyResult"),
]
