"""Dispatch: expand an accepted event into one delivery per recipient and channel, record them,
and send or enqueue the queued ones in channel batches. Safe to run twice for the same event:
delivery ids are derived from (event, user, channel), so a re-run inserts nothing new."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from backend.channels import Channel
from backend.db.history.base import DeliveryRecord, DeliveryStatus, StatusChange
from backend.db.models import ScheduledEvent, UserPreferences
from backend.db.repositories.events import ScheduledEventRepository
from backend.db.repositories.preferences import preferences_of
from backend.observability import metrics
from backend.services import digests as digest_service
from backend.services.deliveries.claims import preclaimed
from backend.services.deliveries.context import DeliveryContext, chunks
from backend.services.deliveries.records import NAMESPACE, announce, delivery_id, delivery_update
from backend.services.deliveries.sending import send_batch, send_claimed
from backend.services.envelope import Envelope
from backend.services.preferences import held_until
from backend.services.users import UserProfile


@dataclass(frozen=True, slots=True)
class DispatchSummary:
    queued: int
    skipped: int
    parts: int = 0  # a broadcast handed on in this many parts


async def dispatch_event(
    ctx: DeliveryContext,
    envelope: Envelope,
    *,
    redelivered: bool = False,
    profiles: Mapping[str, UserProfile] | None = None,
    split: bool = True,
) -> DispatchSummary:
    """Expand an event into one delivery per recipient and channel, record them, and enqueue the
    queued ones in channel batches. Safe to run twice for the same event.

    An event small enough for one batch per channel is sent right here instead: one broker hop
    less on the path most events take (one user, a channel or two); so are in-app deliveries
    whatever their number (no provider to wait for, so a queue hop would only add work; a
    broadcast is spread over the worker processes by its dispatch parts instead).
    ``redelivered`` (the dispatch message came back after a worker died) lets that send take
    over deliveries the dead worker left in ``sending``. ``split=False`` keeps a large event in
    one piece (a campaign page: its own fan-out already shares the work out)."""
    now = datetime.now(UTC)
    # Millisecond precision, as MongoDB keeps it: a record sent from memory (``send_claimed``)
    # must carry the very updated_at the store holds for its compare-and-set.
    now = now.replace(microsecond=now.microsecond // 1000 * 1000)
    user_ids = list(envelope.recipients)
    if split and len(user_ids) > ctx.settings.dispatch_part_size and envelope.part is None:
        return await _hand_on_in_parts(ctx, envelope, user_ids)
    preferences: dict[str, UserPreferences] = {}
    if not envelope.critical:
        preferences = await preferences_of(ctx.engine, user_ids)
    if envelope.digest and not envelope.critical:
        user_ids = await _collect_for_digests(ctx, envelope, user_ids, preferences, now)
        if not user_ids:
            return DispatchSummary(queued=0, skipped=0)
    plan = await _plan(ctx, envelope, user_ids, preferences, now)
    here = plan.sent_here(ctx.settings.delivery_batch_size)
    stored = await _store(ctx, envelope, plan, here, redelivered=redelivered, now=now)
    if plan.held:
        await _hold_for_quiet_hours(ctx, envelope, plan.held)
    await _announce_stored(ctx, envelope, plan, stored.records, now)
    await _send_and_enqueue(ctx, envelope, plan, here, stored, profiles)
    return DispatchSummary(
        queued=sum(len(v) for v in plan.queued.values()), skipped=sum(plan.skipped.values())
    )


async def _hand_on_in_parts(
    ctx: DeliveryContext, envelope: Envelope, user_ids: list[str]
) -> DispatchSummary:
    """A broadcast: its parts go back on the dispatch queue, one message each, for every
    worker process to take a share. Each part is an event dispatch of its own for some of the
    users (delivery ids do not depend on the part), so a part run twice, or all of them
    published again after this worker died, stores and sends nothing twice."""
    parts = chunks(user_ids, ctx.settings.dispatch_part_size)
    await asyncio.gather(
        *(
            ctx.queue.enqueue_dispatch(envelope.for_users(users, part=n))
            for n, users in enumerate(parts)
        )
    )
    return DispatchSummary(queued=0, skipped=0, parts=len(parts))


async def _collect_for_digests(
    ctx: DeliveryContext,
    envelope: Envelope,
    user_ids: list[str],
    preferences: Mapping[str, UserPreferences],
    now: datetime,
) -> list[str]:
    """A digested type: each user's part waits for their digest (unless they chose instant).
    The users to dispatch to now."""
    assert envelope.digest is not None
    collected = {
        u: when
        for u in user_ids
        if (when := digest_service.due_at(envelope.digest, envelope.type, preferences.get(u), now))
        is not None
    }
    if not collected:
        return user_ids
    # A unit of work of its own, committed before the deliveries are stored: the deliveries go
    # to the history store, which shares no transaction with PostgreSQL. Items are unique per
    # (event, user), so a re-run after a crash keeps nothing twice.
    async with ctx.sessionmaker() as session:
        await digest_service.collect(session, envelope=envelope, users=collected)
        await session.commit()
    return [u for u in user_ids if u not in collected]


@dataclass
class _Plan:
    """Every delivery of the dispatch as first recorded, and what becomes of it."""

    records: list[DeliveryRecord] = field(default_factory=list)
    queued: dict[Channel, list[str]] = field(default_factory=lambda: defaultdict(list))
    skipped: Counter[Channel] = field(default_factory=Counter)
    # Quiet hours hold a user's non-critical deliveries (queued) until the window ends.
    held: dict[datetime, list[str]] = field(default_factory=lambda: defaultdict(list))

    def sent_here(self, batch_size: int) -> dict[Channel, list[str]]:
        """The queued deliveries dispatch sends itself: all of them when each channel fits in
        one batch, else the in-app ones (the rest are enqueued for channel tasks)."""
        small = all(len(ids) <= batch_size for ids in self.queued.values())
        return {c: ids for c, ids in self.queued.items() if small or c is Channel.IN_APP}


def _opted_out(envelope: Envelope, prefs: UserPreferences | None, channel: Channel) -> str | None:
    if prefs is not None and envelope.type in prefs.disabled_event_types:
        return f"the user opted out of '{envelope.type}' notifications"
    if prefs is not None and channel.value in prefs.disabled_channels:
        return f"the user opted out of the {channel.value} channel"
    return None


async def _plan(
    ctx: DeliveryContext,
    envelope: Envelope,
    user_ids: list[str],
    preferences: Mapping[str, UserPreferences],
    now: datetime,
) -> _Plan:
    """One record per user and channel: skipped (opted out, over a limit), held for quiet
    hours, or queued."""
    event_id, channels = envelope.id, list(envelope.channels)
    # A released quiet-hours hold comes back here marked, and is not held again.
    check_quiet = not envelope.critical and not envelope.quiet_released
    # Throttles and budgets count what the user would otherwise receive (a released quiet-hours
    # hold was counted when it was held).
    limited: dict[str, str] = {}
    if ctx.limits is not None and not envelope.critical and not envelope.quiet_released:
        limited = await ctx.limits.over_limit(
            event_id=event_id,
            event_type=envelope.type,
            throttle=envelope.throttle,
            deliveries=[
                (delivery_id(event_id, u, c), u, c)
                for u in user_ids
                for c in channels
                if _opted_out(envelope, preferences.get(u), c) is None
            ],
        )
    plan = _Plan()
    for user_id in user_ids:
        prefs = preferences.get(user_id)
        type_opt_out = prefs is not None and envelope.type in prefs.disabled_event_types
        hold = held_until(prefs, now) if check_quiet else None
        if hold is not None and not type_opt_out:
            plan.held[hold].append(user_id)
        for channel in channels:
            did = delivery_id(event_id, user_id, channel)
            reason = _opted_out(envelope, prefs, channel) or limited.get(did)
            status = DeliveryStatus.SKIPPED if reason else DeliveryStatus.QUEUED
            note = reason
            if hold is not None and not reason:
                note = f"held for the user's quiet hours until {hold.isoformat()}"
            plan.records.append(
                DeliveryRecord(
                    id=did,
                    event_id=event_id,
                    event_type=envelope.type,
                    user_id=user_id,
                    channel=channel,
                    created_at=now,
                    updated_at=now,
                    status=status,
                    campaign_id=envelope.campaign_id,
                    template_slug=envelope.template_slug,
                    locale=envelope.locale,
                    timeline=[StatusChange(status, now, note)],
                )
            )
            if reason:
                plan.skipped[channel] += 1
            elif hold is None:
                plan.queued[channel].append(did)
    return plan


@dataclass(frozen=True, slots=True)
class _Stored:
    """The records as this dispatch stored them, and whether they are its own to send."""

    records: list[DeliveryRecord]
    # The records by id when this call inserted every one of them already claimed: what the
    # store holds, sent from memory without a read or a claim. None when another run had
    # stored some first, or on a redelivered dispatch: the store's own are read and claimed.
    owned: dict[str, DeliveryRecord] | None
    unstored: frozenset[str]  # of the owned, in-app records left to be stored with their outcome


async def _store(
    ctx: DeliveryContext,
    envelope: Envelope,
    plan: _Plan,
    here: Mapping[Channel, list[str]],
    *,
    redelivered: bool,
    now: datetime,
) -> _Stored:
    records = plan.records
    # Deliveries sent right here are stored already claimed (``sending``, with their queued
    # entry before it): one UPDATE less on the path most events take. Not on a re-run, whose
    # records may be another worker's.
    claiming = not redelivered and bool(here)
    if claiming:
        mine = {i for ids in here.values() for i in ids}
        records = [preclaimed(r, now) if r.id in mine else r for r in records]
    # In-app deliveries sent right here reach the history once, when their inbox item is
    # stored: already sent (or, if something goes wrong first, stored then as they are and
    # moved on from there). An insert and an UPDATE of every row become one insert. The inbox
    # append is idempotent, so a duplicate run stores and sends nothing twice.
    unstored = (
        set(here.get(Channel.IN_APP, ()))
        if claiming and not envelope.quiet_released  # a release: records exist
        else set()
    )
    stored_now = [r for r in records if r.id not in unstored]
    inserted = await _add(ctx, stored_now)
    # Records this call inserted are what the store holds: sending here needs not read them
    # back. After a re-run (some already existed), the store's own are read.
    first_run = inserted == len(stored_now) and not redelivered
    if unstored and not first_run:
        # Another run got here first: no shortcut, the in-app records are stored as claimed.
        await _add(ctx, [r for r in records if r.id in unstored])
        unstored = set()
    # Pre-claimed records that met existing ones (a duplicate dispatch message) are not known
    # to be this call's: they are left to the lease, as a dead worker's would be.
    owned = {r.id: r for r in records} if claiming and first_run else None
    return _Stored(records, owned, frozenset(unstored))


async def _add(ctx: DeliveryContext, records: Sequence[DeliveryRecord]) -> int:
    inserted = 0
    for start in range(0, len(records), 1000):
        inserted += await ctx.history.add(records[start : start + 1000])
    return inserted


async def _hold_for_quiet_hours(
    ctx: DeliveryContext, envelope: Envelope, held: dict[datetime, list[str]]
) -> None:
    """Store the held users' part of the event to be dispatched again when their quiet hours
    end (the scheduled-event release, not a broker delay: holds last hours). One row per end
    time, with an id derived from the event and that time, so a re-run stores nothing new."""
    rows = [
        ScheduledEvent(
            id=uuid.uuid5(NAMESPACE, f"{envelope.id}/quiet/{until.isoformat()}"),
            due_at=until,
            envelope=envelope.for_users(users, quiet_released=True).to_wire(),
        )
        for until, users in held.items()
    ]
    # Committed before anything is announced or sent: the held deliveries, stored as queued in
    # the history store (no shared transaction), are released only by these rows.
    async with ctx.sessionmaker() as session:
        await ScheduledEventRepository(session).add_many(rows)
        await session.commit()


async def _announce_stored(
    ctx: DeliveryContext,
    envelope: Envelope,
    plan: _Plan,
    records: list[DeliveryRecord],
    now: datetime,
) -> None:
    """Count and announce every record as first stored (and its claim, when pre-claimed)."""
    for channel in envelope.channels:
        metrics.record_delivery(channel.value, "queued", len(plan.queued.get(channel, ())))
        metrics.record_delivery(channel.value, "skipped", plan.skipped[channel])
    updates = []
    for r in records:
        first = r.timeline[0]
        updates.append(delivery_update(r, first.status, now, first.reason))
        if r.status is DeliveryStatus.SENDING:
            updates.append(delivery_update(r, DeliveryStatus.SENDING, now, None))
            metrics.record_delivery(r.channel.value, DeliveryStatus.SENDING.value)
    await announce(ctx, updates)


async def _send_and_enqueue(
    ctx: DeliveryContext,
    envelope: Envelope,
    plan: _Plan,
    here: Mapping[Channel, list[str]],
    stored: _Stored,
    profiles: Mapping[str, UserProfile] | None,
) -> None:
    """Send this dispatch's own batches, enqueue the others for channel tasks."""
    size = ctx.settings.delivery_batch_size
    send_envelope = envelope.without_recipients()

    async def send_here(channel: Channel, chunk: Sequence[str]) -> object:
        if stored.owned is not None:
            return await send_claimed(
                ctx,
                envelope=send_envelope,
                channel=channel,
                records=[stored.owned[i] for i in chunk],
                attempt=1,
                unstored=stored.unstored,
                profiles=profiles,
            )
        # A re-run (redelivered, or records met from another run): only what is still queued
        # is claimed, and deliveries left in `sending` are taken over once their lease ends.
        return await send_batch(
            ctx,
            envelope=send_envelope,
            channel=channel,
            delivery_ids=chunk,
            attempt=1,
            resume=True,
            profiles=profiles,
        )

    await asyncio.gather(
        *(
            send_here(channel, chunk)
            for channel, ids in here.items()
            for chunk in chunks(ids, size)
        ),
        *(
            ctx.queue.enqueue_send(send_envelope, channel, chunk, attempt=1)
            for channel, ids in plan.queued.items()
            if channel not in here
            for chunk in chunks(ids, size)
        ),
    )
