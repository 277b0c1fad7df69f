"""In-app deliveries: the inbox is their record of truth, the live channel a courtesy."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.exc import SQLAlchemyError

from backend.channels.base import OutgoingMessage
from backend.db.history.base import Attempt, DeliveryRecord, DeliveryStatus, Rendered
from backend.db.repositories.inbox import NewInboxItem
from backend.errors import UnavailableError
from backend.services import inbox as inbox_service
from backend.services.deliveries.context import DeliveryContext
from backend.services.deliveries.records import RecordingHistory
from backend.services.live import NewNotification


@dataclass(frozen=True, slots=True)
class InAppItem:
    """One rendered in-app delivery waiting for its batch's inbox write."""

    record: DeliveryRecord
    message: OutgoingMessage
    stored: Rendered


async def deliver_in_app(
    ctx: DeliveryContext, history: RecordingHistory, items: list[InAppItem], attempt: int
) -> None:
    """Store the batch's items in the inbox in one transaction, mark them sent, then publish
    them live. A lost publish is recovered by subscriptions replaying from the inbox, so it
    never fails a delivery.

    Raises ``UnavailableError`` when the inbox could not be written (nothing is marked)."""
    new_items = [
        NewInboxItem(
            delivery_id=item.record.id,
            user_id=item.record.user_id,
            event_id=item.message.event_id,
            event_type=item.message.event_type,
            title=item.message.title,
            body=item.message.body,
            data=item.message.data,
            created_at=datetime.now(UTC),
        )
        for item in items
    ]
    try:
        entries = await inbox_service.store_items(ctx.engine, new_items)
    except (OSError, SQLAlchemyError) as exc:
        raise UnavailableError(f"the inbox could not be written: {exc}") from exc
    at = datetime.now(UTC)
    await history.transition_many(
        [item.record.id for item in items],
        DeliveryStatus.SENT,
        at=at,
        expected=frozenset({DeliveryStatus.SENDING}),
        rendered={item.record.id: item.stored for item in items},
        attempt=Attempt(number=attempt, at=at, provider="inbox"),
    )
    if ctx.live is not None:
        await ctx.live.publish_many([(e.user_id, NewNotification(e)) for e in entries])
