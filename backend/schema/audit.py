"""GraphQL types of the audit log."""

from __future__ import annotations

from datetime import datetime

import strawberry

from backend.db.models import AuditEntry as AuditEntryModel
from backend.schema.common import JSON, Connection


@strawberry.type(description="One admin or manager mutation, or an attempt at one.")
class AuditEntry:
    id: strawberry.ID
    at: datetime = strawberry.field(description="When it ended.")
    actor: str = strawberry.field(description="The token's subject (user id).")
    actor_roles: list[str] = strawberry.field(description="The token's roles.")
    operation: str = strawberry.field(description="The mutation field, e.g. `createTemplate`.")
    arguments: JSON = strawberry.field(
        description="Its arguments, without secrets or message content (sizes instead)."
    )
    outcome: str = strawberry.field(description="`ok`, or the error code it ended with.")
    error: str | None = strawberry.field(description="The error's message, when it failed.")

    @classmethod
    def from_model(cls, row: AuditEntryModel) -> AuditEntry:
        return cls(
            id=strawberry.ID(str(row.id)),
            at=row.at,
            actor=row.actor,
            actor_roles=list(row.actor_roles),
            operation=row.operation,
            arguments=row.arguments,  # type: ignore[arg-type]
            outcome=row.outcome,
            error=row.error,
        )


@strawberry.type(description="Audit entries, newest first.")
class AuditEntryConnection(Connection[AuditEntry]):
    pass


@strawberry.input(description="Narrow the audit log; every given field must match.")
class AuditFilter:
    actor: str | None = strawberry.field(default=None, description="A user id.")
    operation: str | None = strawberry.field(
        default=None, description="A mutation field name, e.g. `deleteTemplate`."
    )
    since: datetime | None = strawberry.field(default=None, description="At or after.")
    until: datetime | None = strawberry.field(default=None, description="Before.")
