"""In-app deliveries: a batch goes through the in-app sender at once (one inbox statement,
one Redis pipeline), instead of one message at a time as the provider channels do."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from backend.channels.base import OutgoingMessage, TransientChannelError
from backend.channels.in_app import InAppSender
from backend.db.history.base import Attempt, DeliveryRecord, DeliveryStatus, Rendered
from backend.errors import UnavailableError
from backend.services.deliveries.context import DeliveryContext
from backend.services.deliveries.records import RecordingHistory


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
    sender = InAppSender(ctx.engine, ctx.live)
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
