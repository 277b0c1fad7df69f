"""In-app deliveries: a batch goes through the in-app sender at once (one inbox statement,
one Redis call), instead of one message at a time as the provider channels do."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from backend.channels.base import OutgoingMessage, TransientChannelError
from backend.channels.in_app import InAppSender
from backend.db.history.base import Attempt, DeliveryRecord, DeliveryStatus, Rendered
from backend.db.repositories.inbox import NewInboxItem
from backend.errors import UnavailableError
from backend.services.deliveries.context import DeliveryContext
from backend.services.deliveries.records import RecordingHistory
from backend.services.inbox import InboxEntry, store_items
from backend.services.live import NewNotification, RedisLivePublisher


@dataclass(frozen=True, slots=True)
class StoredInbox:
    """The in-app sender's inbox: rows in PostgreSQL (one statement a batch), announced on
    the users' Redis channels in one call (``RedisLivePublisher.publish_many``)."""

    engine: AsyncEngine
    live: RedisLivePublisher | None

    async def store(
        self, messages: Sequence[OutgoingMessage], created_at: datetime
    ) -> list[InboxEntry]:
        items = [
            NewInboxItem(
                delivery_id=message.delivery_id,
                user_id=message.user.id,
                event_id=message.event_id,
                event_type=message.event_type,
                title=message.title,
                body=message.body,
                data=message.data,
                created_at=created_at,
                actions=list(message.actions),
                tenant_id=message.tenant_id,
            )
            for message in messages
        ]
        return await store_items(self.engine, items)

    async def announce(self, stored: list[InboxEntry]) -> None:
        if self.live is not None:
            await self.live.publish_many([(e.user_id, NewNotification(e)) for e in stored])


@dataclass(frozen=True, slots=True)
class InAppItem:
    """One rendered in-app delivery waiting for its batch's inbox write."""

    record: DeliveryRecord
    message: OutgoingMessage
    stored: Rendered


async def deliver_in_app(
    ctx: DeliveryContext, history: RecordingHistory, items: list[InAppItem], attempt: int
) -> None:
    """Send the batch's items through the in-app sender (stored in the inbox in one
    transaction, then published live), then mark them sent.

    Raises ``UnavailableError`` when the inbox could not be written (nothing is marked)."""
    sender = InAppSender(StoredInbox(ctx.engine, ctx.live))
    try:
        results = await sender.send_many([item.message for item in items])
    except TransientChannelError as exc:
        raise UnavailableError(exc.message) from exc
    at = datetime.now(UTC)
    await history.transition_many(
        [item.record.id for item in items],
        DeliveryStatus.SENT,
        at=at,
        expected=frozenset({DeliveryStatus.SENDING}),
        rendered={item.record.id: item.stored for item in items},
        attempt=Attempt(number=attempt, at=at, provider=results[0].provider),
    )
