"""GraphQL types for the providers of channels with failover and their circuit breakers."""

from __future__ import annotations

from datetime import datetime

import strawberry

from backend.channels import Channel
from backend.channels.failover import BreakerState
from backend.channels.failover import ProviderHealth as ProviderHealthData

strawberry.enum(
    BreakerState,
    name="ProviderBreakerState",
    description=(
        "A provider's circuit breaker: CLOSED (in use), OPEN (skipped after failures in a "
        "row, until `openUntil`), HALF_OPEN (the next send probes it)."
    ),
)


@strawberry.type(description="A provider failure, as its circuit breaker recorded it.")
class ProviderFailure:
    at: datetime
    error: str


@strawberry.type(description="One provider of a channel with failover, and its circuit breaker.")
class ProviderHealth:
    channel: Channel
    provider: str
    priority: int = strawberry.field(description="1 is tried first.")
    state: BreakerState
    consecutive_failures: int
    open_until: datetime | None = strawberry.field(
        description="While open, skipped until then; after it one send probes the provider."
    )
    last_failure_at: datetime | None
    last_error: str | None
    last_success_at: datetime | None = strawberry.field(
        description="The last success after a failure (successes in a row are not written)."
    )
    recent_failures: list[ProviderFailure] = strawberry.field(
        description="The latest failures, newest first (up to 10)."
    )

    @classmethod
    def from_data(cls, data: ProviderHealthData) -> ProviderHealth:
        return cls(
            channel=data.channel,
            provider=data.provider,
            priority=data.priority,
            state=data.state,
            consecutive_failures=data.consecutive_failures,
            open_until=data.open_until,
            last_failure_at=data.last_failure_at,
            last_error=data.last_error,
            last_success_at=data.last_success_at,
            recent_failures=[ProviderFailure(at=f.at, error=f.error) for f in data.recent_failures],
        )
