"""GraphQL types for forgetting a user."""

from __future__ import annotations

from typing import Annotated

import strawberry

from backend.schema.errors import AccessErrors, ValidationError
from backend.services.retention import Forgotten


@strawberry.type(
    description="What deleteRecipient removed or scrubbed. Every count is 0 when the user "
    "was already forgotten (or never known)."
)
class RecipientDeleted:
    hashed_user_id: str = strawberry.field(
        description="The one-way hash the user's history rows now carry instead of their id."
    )
    recipients: int = strawberry.field(description="Recipient profiles deleted.")
    addresses: int = strawberry.field(
        description="Channel addresses deleted (web push subscriptions, device tokens, chat ids)."
    )
    inbox_items: int = strawberry.field(description="In-app inbox items deleted.")
    preferences: int = strawberry.field(description="Preference rows deleted (0 or 1).")
    topic_memberships: int = strawberry.field(description="Topic memberships deleted.")
    deliveries_scrubbed: int = strawberry.field(
        description="History deliveries kept for counts, their content and address removed."
    )
    digest_items_cancelled: int = strawberry.field(description="Waiting digest items deleted.")
    scheduled_events_changed: int = strawberry.field(
        description="Scheduled events deleted (the user's alone) or without the user."
    )
    campaigns_changed: int = strawberry.field(
        description="Campaigns whose audience listed the user (one left empty is cancelled)."
    )
    dead_letters: int = strawberry.field(description="Dead letters deleted.")
    audit_entries_scrubbed: int = strawberry.field(
        description="Audit entries whose user id became the hash."
    )
    cache_keys: int = strawberry.field(description="Redis keys deleted (profile, limits).")

    @classmethod
    def from_forgotten(cls, forgotten: Forgotten) -> RecipientDeleted:
        count = forgotten.count
        return cls(
            hashed_user_id=forgotten.hashed_id,
            recipients=count("recipients"),
            addresses=count("addresses"),
            inbox_items=count("inbox_items"),
            preferences=count("preferences"),
            topic_memberships=count("topic_memberships"),
            deliveries_scrubbed=count("deliveries"),
            digest_items_cancelled=count("digest_items"),
            scheduled_events_changed=count("scheduled_events"),
            campaigns_changed=count("campaigns"),
            dead_letters=count("dead_letters"),
            audit_entries_scrubbed=count("audit_entries"),
            cache_keys=count("cache_keys"),
        )


DeleteRecipientResult = Annotated[
    RecipientDeleted | ValidationError | AccessErrors,
    strawberry.union("DeleteRecipientResult"),
]
