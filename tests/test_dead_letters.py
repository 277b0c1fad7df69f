"""Dead letters and the history agree: a delivery the history shows failed for good has its
dead letter committed already, and a replay leaves alone the letter of a delivery that is
still being tried. Real PostgreSQL (dead letters and the history store)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Collection, Sequence
from typing import Any

import pytest
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.auth import Principal
from backend.channels import Channel
from backend.config import Settings
from backend.db.history.base import DeliveryStatus
from backend.db.history.postgres import PostgresHistoryStore
from backend.db.models import DeadLetter
from backend.db.repositories.dead_letters import DeadLetterRepository
from backend.db.session import create_sessionmaker
from backend.services.dead_letters import retry_dead_letters
from backend.services.deliveries import delivery_id
from backend.services.users import UserProfile
from backend.workers import units
from tests.factories import RecordingQueue, delivery_context, envelope, make_delivery

FINAL = frozenset({DeliveryStatus.FAILED, DeliveryStatus.DEAD})


class Profiles:
    async def get_many(self, user_ids: Sequence[str]) -> dict[str, UserProfile | None]:
        return {u: UserProfile(id=u, first_name="Dana", locale="en") for u in user_ids}


class LetterCheckingHistory(PostgresHistoryStore):
    """The PostgreSQL store, noting for each delivery moved to failed or dead whether its
    dead letter was committed when the move was made."""

    def __init__(self, engine: AsyncEngine) -> None:
        super().__init__(engine)
        self.checked_engine = engine
        self.letter_committed: dict[str, bool] = {}

    async def _note(self, ids: Collection[str], status: DeliveryStatus) -> None:
        if status not in FINAL:
            return
        async with self.checked_engine.connect() as conn:
            rows = await conn.execute(
                select(DeadLetter.delivery_id).where(DeadLetter.delivery_id.in_(list(ids)))
            )
            found = set(rows.scalars())
        self.letter_committed.update({i: i in found for i in ids})

    async def transition(self, delivery_id: str, status: DeliveryStatus, **kwargs: Any) -> bool:
        await self._note([delivery_id], status)
        return await super().transition(delivery_id, status, **kwargs)

    async def transition_many(
        self, delivery_ids: Sequence[str], status: DeliveryStatus, **kwargs: Any
    ) -> set[str]:
        await self._note(delivery_ids, status)
        return await super().transition_many(delivery_ids, status, **kwargs)


@pytest.fixture
async def letters(engine: AsyncEngine) -> AsyncIterator[list[str]]:
    """Delivery ids whose dead letters are removed after the test (they commit for real)."""
    ids: list[str] = []
    yield ids
    async with engine.begin() as conn:
        await conn.execute(delete(DeadLetter).where(DeadLetter.delivery_id.in_(ids)))


async def test_a_delivery_is_recorded_failed_only_once_its_dead_letter_is_committed(
    settings: Settings, engine: AsyncEngine, letters: list[str]
) -> None:
    history = LetterCheckingHistory(engine)
    ctx = delivery_context(
        settings, engine, None, queue=RecordingQueue(), users=Profiles(), history=history
    )
    user = f"dl-{uuid.uuid4().hex[:8]}"
    # A template that does not exist: the delivery fails for good, without a provider.
    event = envelope(user, Channel.SMS, template_slug=f"gone-{uuid.uuid4().hex[:8]}")
    await units.dispatch(ctx, event)
    ident = delivery_id(event.id, user, Channel.SMS)
    letters.append(ident)
    await units.send(
        ctx, envelope=event, channel=Channel.SMS, delivery_ids=[ident], attempt=1, resume=False
    )

    record = await history.get(ident)
    assert record is not None and record.status is DeliveryStatus.FAILED
    assert history.letter_committed == {ident: True}
    async with create_sessionmaker(engine)() as session:
        [letter] = await DeadLetterRepository(session).take([ident])
    assert "no longer exists" in letter.error


async def test_a_replay_keeps_the_letter_of_a_delivery_still_being_tried(
    settings: Settings, engine: AsyncEngine, letters: list[str]
) -> None:
    history = PostgresHistoryStore(engine)
    run = uuid.uuid4().hex[:8]
    statuses = {
        f"dead-{run}": DeliveryStatus.DEAD,  # replayed
        f"trying-{run}": DeliveryStatus.SENDING,  # its batch has not recorded it failed yet
        f"sent-{run}": DeliveryStatus.SENT,  # sent after all: its letter is stale
    }
    await history.add(
        [
            make_delivery(ident, event_id=f"e-{run}", channel=Channel.SMS, status=status)
            for ident, status in statuses.items()
        ]
    )
    event = envelope("u-1", Channel.SMS)
    sessionmaker = create_sessionmaker(engine)
    async with sessionmaker() as session, session.begin():
        await DeadLetterRepository(session).add(
            [
                DeadLetter(
                    delivery_id=ident,
                    event_id=f"e-{run}",
                    event_type="movie_added",
                    user_id="u-1",
                    channel=Channel.SMS.value,
                    envelope=event.to_wire(),
                    error="gave up after 4 attempts",
                    attempts=4,
                )
                for ident in statuses
            ]
        )
    letters.extend(statuses)
    queue = RecordingQueue()

    async with sessionmaker() as session, session.begin():
        replayed, others = await retry_dead_letters(
            session,
            actor=Principal(user_id="admin-1", roles=frozenset({"admin"})),
            history=history,
            queue=queue,
            delivery_ids=[*statuses, f"none-{run}"],
        )

    assert replayed == [f"dead-{run}"]
    assert sorted(others) == sorted([f"trying-{run}", f"sent-{run}", f"none-{run}"])
    assert len(queue.sent) == 1
    async with sessionmaker() as session:
        left = await DeadLetterRepository(session).take(list(statuses))
    assert [d.delivery_id for d in left] == [f"trying-{run}"]
    records = {r.id: r.status for r in await history.get_many(list(statuses))}
    assert records == {
        f"dead-{run}": DeliveryStatus.QUEUED,
        f"trying-{run}": DeliveryStatus.SENDING,
        f"sent-{run}": DeliveryStatus.SENT,
    }
