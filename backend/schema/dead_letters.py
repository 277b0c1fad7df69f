"""GraphQL types for dead letters: deliveries that failed for good."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import strawberry

from backend.channels import Channel
from backend.db.models import DeadLetter as DeadLetterModel
from backend.schema.common import Connection
from backend.schema.errors import (
    AccessErrors,
    ValidationError,
)


@strawberry.type(description="A delivery that failed for good; replay it with retryDeadLetters.")
class DeadLetter:
    delivery_id: strawberry.ID
    event_id: strawberry.ID
    event_type: str
    user_id: strawberry.ID
    channel: Channel
    error: str
    attempts: int
    dead_at: datetime

    @classmethod
    def from_model(cls, row: DeadLetterModel) -> DeadLetter:
        return cls(
            delivery_id=strawberry.ID(row.delivery_id),
            event_id=strawberry.ID(row.event_id),
            event_type=row.event_type,
            user_id=strawberry.ID(row.user_id),
            channel=Channel(row.channel),
            error=row.error,
            attempts=row.attempts,
            dead_at=row.created_at,
        )


DeadLetterConnection = Connection[DeadLetter]


@strawberry.type
class DeadLettersRetried:
    retried: list[strawberry.ID]
    not_found: list[strawberry.ID] = strawberry.field(
        description=(
            "Ids not replayed: not dead letters (never were, or already replayed), "
            "or still being tried."
        )
    )


RetryDeadLettersResult = Annotated[
    DeadLettersRetried | ValidationError | AccessErrors,
    strawberry.union("RetryDeadLettersResult"),
]
