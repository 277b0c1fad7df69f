"""Claims: how a batch makes deliveries its own before sending them.

A sender moves a delivery from ``queued`` to ``sending`` with a compare-and-set on the record's
``updated_at`` as read, so of two tasks holding the same delivery only one sends it. A resumed
task (its message redelivered after a worker died, or a task retried after an unexpected error)
may also take over deliveries left in ``sending``, once their lease has run out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta

from backend.channels import Channel
from backend.db.history.base import DeliveryRecord, DeliveryStatus, StatusChange
from backend.services import task_messages
from backend.services.deliveries.context import DeliveryContext
from backend.services.deliveries.records import RecordingHistory
from backend.services.envelope import Envelope


def preclaimed(record: DeliveryRecord, at: datetime) -> DeliveryRecord:
    """The new record as stored already claimed for sending: queued, then sending."""
    return record.evolved(
        status=DeliveryStatus.SENDING,
        timeline=[*record.timeline, StatusChange(DeliveryStatus.SENDING, at)],
    )


async def claim(
    ctx: DeliveryContext,
    history: RecordingHistory,
    *,
    envelope: Envelope,
    channel: Channel,
    records: Mapping[str, DeliveryRecord],
    delivery_ids: Sequence[str],
    attempt: int,
    resume: bool,
) -> list[DeliveryRecord]:
    """The batch's deliveries this task won, in batch order.

    With ``resume``, deliveries in ``sending`` whose lease has run out are taken over too; those
    still leased may belong to a worker that is still sending, so they are handed to a task of
    their own that looks at them again when the lease ends."""
    takeable = frozenset(
        {DeliveryStatus.QUEUED, DeliveryStatus.SENDING} if resume else {DeliveryStatus.QUEUED}
    )
    now = datetime.now(UTC)
    lease = timedelta(seconds=ctx.settings.delivery_lease_seconds)

    def leased(record: DeliveryRecord) -> bool:
        return record.status is DeliveryStatus.SENDING and record.updated_at > now - lease

    present = [records[i] for i in delivery_ids if i in records]
    if resume:
        still_leased = [r for r in present if leased(r)]
        if still_leased:
            wait = max((r.updated_at + lease - now).total_seconds() for r in still_leased)
            await ctx.queue.enqueue_send(
                task_messages.send(
                    envelope,
                    channel,
                    [r.id for r in still_leased],
                    attempt=attempt,
                    countdown=wait + 1,
                    resume=True,
                )
            )
    candidates = [r for r in present if r.status in takeable and not leased(r)]
    # The record's updated_at as read makes each claim exclusive, takeovers of `sending` too:
    # of two tasks racing for a delivery, only one sees it unchanged.
    won = await history.transition_many(
        [r.id for r in candidates],
        DeliveryStatus.SENDING,
        at=now,
        expected=takeable,
        unchanged_since={r.id: r.updated_at for r in candidates},
    )
    return [r for r in candidates if r.id in won]
