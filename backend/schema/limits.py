"""GraphQL types and inputs for per-user delivery budgets."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import strawberry

from backend.channels import Channel
from backend.schema.errors import (
    AccessErrors,
    ValidationError,
)


@strawberry.type(
    description=(
        "At most `maxDeliveries` non-critical deliveries per user on `channel` every "
        "`windowSeconds`, all event types and campaigns together; the rest are skipped."
    )
)
class DeliveryBudget:
    channel: Channel
    max_deliveries: int
    window_seconds: int
    updated_by: str | None
    updated_at: datetime


@strawberry.input
class DeliveryBudgetInput:
    channel: Channel
    max_deliveries: int
    window_seconds: int


DeliveryBudgetResult = Annotated[
    DeliveryBudget | ValidationError | AccessErrors,
    strawberry.union("DeliveryBudgetResult"),
]


@strawberry.type
class DeliveryBudgetRemoved:
    channel: Channel
    removed: bool = strawberry.field(description="False when the channel had no budget.")


RemoveDeliveryBudgetResult = Annotated[
    DeliveryBudgetRemoved | AccessErrors,
    strawberry.union("RemoveDeliveryBudgetResult"),
]
