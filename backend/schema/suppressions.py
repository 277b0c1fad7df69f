"""GraphQL types for the email suppression list."""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Annotated

import strawberry

from backend.db.models import EmailSuppression as EmailSuppressionModel
from backend.schema.common import Connection
from backend.schema.errors import AccessErrors, NotFoundError, ValidationError
from backend.services.suppressions import SuppressionKind


@strawberry.enum(description="Why an address is suppressed.")
class EmailSuppressionKind(Enum):
    HARD_BOUNCE = SuppressionKind.HARD_BOUNCE.value
    COMPLAINT = SuppressionKind.COMPLAINT.value


@strawberry.type(
    description=(
        "An email address Herald no longer sends to: it bounced for good or its owner "
        "reported a message as spam. Email to it is skipped until it is removed."
    )
)
class EmailSuppression:
    address: str = strawberry.field(description="Lower-cased.")
    kind: EmailSuppressionKind
    provider: str = strawberry.field(
        description="Who reported it: ses, sendgrid, postmark, mailgun or dsn (SMTP reports)."
    )
    reason: str = strawberry.field(description="What the provider said.")
    delivery_id: strawberry.ID | None = strawberry.field(
        description="The delivery the report was about, when it named one."
    )
    suppressed_at: datetime

    @classmethod
    def from_model(cls, row: EmailSuppressionModel) -> EmailSuppression:
        return cls(
            address=row.address,
            kind=EmailSuppressionKind(row.kind),
            provider=row.provider,
            reason=row.reason,
            delivery_id=strawberry.ID(row.delivery_id) if row.delivery_id else None,
            suppressed_at=row.created_at,
        )


EmailSuppressionConnection = Connection[EmailSuppression]


@strawberry.input(description="Narrows emailSuppressions; every set field must match.")
class EmailSuppressionFilter:
    address_contains: str | None = strawberry.field(
        default=None, description="Part of the address, any case."
    )
    kind: EmailSuppressionKind | None = None


@strawberry.type(description="An address taken off the suppression list: email reaches it again.")
class EmailSuppressionRemoved:
    address: str


RemoveEmailSuppressionResult = Annotated[
    EmailSuppressionRemoved | ValidationError | NotFoundError | AccessErrors,
    strawberry.union("RemoveEmailSuppressionResult"),
]
