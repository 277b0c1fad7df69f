"""Dead letters: deliveries that failed for good, listed for admins and replayable."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from backend.auth import Principal
from backend.channels import Channel
from backend.db.history.base import DeliveryStatus, HistoryStore
from backend.db.models import DeadLetter
from backend.db.repositories.dead_letters import DeadLetterRepository
from backend.errors import ValidationError
from backend.services import task_messages
from backend.services.deliveries import DeliveryQueue, Envelope
from backend.services.pagination import (
    Page,
    check_page_size,
    decode_time_key_cursor,
    encode_time_cursor,
)

MAX_REPLAY = 500


def _cursor(letter: DeadLetter) -> str:
    return encode_time_cursor("dead", letter.created_at, letter.delivery_id)


async def list_dead_letters(
    session: AsyncSession, *, first: int, after: str | None
) -> Page[DeadLetter]:
    """Dead letters, newest first."""
    limit = check_page_size(first)
    position = decode_time_key_cursor("dead", after)
    rows = await DeadLetterRepository(session).page(after=position, limit=limit + 1)
    return Page(items=[(_cursor(r), r) for r in rows[:limit]], has_next_page=len(rows) > limit)


async def retry_dead_letters(
    session: AsyncSession,
    *,
    actor: Principal,
    history: HistoryStore,
    queue: DeliveryQueue,
    delivery_ids: Sequence[str],
) -> tuple[list[str], list[str]]:
    """Put dead letters back in the queue as a fresh first attempt.

    Returns (replayed ids, the others: not dead letters, or not yet or not any more). The
    rows are removed in the caller's unit of work; a delivery is re-enqueued only after its
    status moved back to ``queued``, so replaying the same id twice at once sends it once.
    """
    ids = list(dict.fromkeys(delivery_ids))
    if not ids or len(ids) > MAX_REPLAY:
        raise ValidationError(f"Give 1 to {MAX_REPLAY} delivery ids", field="ids")
    repo = DeadLetterRepository(session)
    letters = await repo.take(ids)
    now = datetime.now(UTC)
    batches: dict[tuple[str, str], list[str]] = defaultdict(list)
    envelopes = {}
    replayed: list[str] = []
    for letter in letters:
        moved = await history.transition(
            letter.delivery_id,
            DeliveryStatus.QUEUED,
            at=now,
            expected=frozenset({DeliveryStatus.FAILED, DeliveryStatus.DEAD}),
            reason=f"replayed by {actor.user_id}",
        )
        if moved:
            batches[(letter.event_id, letter.channel)].append(letter.delivery_id)
            envelopes[letter.event_id] = Envelope.from_wire(letter.envelope)
            replayed.append(letter.delivery_id)
    for (event_id, channel), batch in batches.items():
        await queue.enqueue_send(
            task_messages.send(envelopes[event_id], Channel(channel), batch, attempt=1)
        )
    # A letter whose delivery did not move is stale (the delivery was sent after all), or
    # its delivery is still being tried: its batch commits the letter before it records the
    # delivery failed for good (``_Batch.conclude``), and the letter stays for that.
    unmoved = [letter.delivery_id for letter in letters if letter.delivery_id not in replayed]
    pending = frozenset({DeliveryStatus.QUEUED, DeliveryStatus.SENDING})
    trying = {r.id for r in await history.get_many(unmoved) if r.status in pending}
    await repo.delete([d.delivery_id for d in letters if d.delivery_id not in trying])
    return replayed, [i for i in ids if i not in replayed]
