"""Dispatch: expand an accepted event into one delivery per recipient and channel, record them,
and send or enqueue the queued ones in channel batches. Safe to run twice for the same event:
delivery ids are derived from (event, user, channel), so a re-run inserts nothing new.

Two steps, each in a transaction of the caller's: ``record_dispatch`` (the deliveries, and the
rows that release held and digested users later) and, once that committed, ``send_dispatched``,
whose outcome the caller saves and hands on as a channel batch's (``sending``)."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from backend.channels import Channel
from backend.db.history.base import DeliveryRecord, DeliveryStatus, StatusChange
from backend.db.models import ScheduledEvent, UserPreferences
from backend.db.repositories.events import ScheduledEventRepository
from backend.db.repositories.preferences import preferences_of
from backend.observability import metrics
from backend.services import digests as digest_service
from backend.services import task_messages
from backend.services import topics as topic_service
from backend.services.deliveries.claims import preclaimed
from backend.services.deliveries.context import DeliveryContext, chunks
from backend.services.deliveries.records import NAMESPACE, announce, delivery_id, delivery_update
from backend.services.deliveries.sending import (
    BatchOutcome,
    claim_batch,
    send_batch,
    send_claimed,
    send_claimed_together,
)
from backend.services.envelope import Envelope
from backend.services.preferences import held_until
from backend.services.users import UserProfile


@dataclass(frozen=True, slots=True)
class DispatchSummary:
    queued: int
    skipped: int
    parts: int = 0  # a broadcast handed on in this many parts


@dataclass(frozen=True, slots=True)
class Dispatched:
    """An event as ``record_dispatch`` left it: what ``send_dispatched`` sends or enqueues."""

    envelope: Envelope
    summary: DispatchSummary
    now: datetime
    parts: list[Envelope] = field(default_factory=list)  # a broadcast handed on in parts
    plan: _Plan | None = None
    here: Mapping[Channel, list[str]] = field(default_factory=dict)
    stored: _Stored | None = None


async def record_dispatch(
    ctx: DeliveryContext,
    session: AsyncSession,
    envelope: Envelope,
    *,
    redelivered: bool = False,
    split: bool = True,
) -> Dispatched:
    """Expand an event into one delivery per recipient and channel and record them; the
    digest items and quiet-hours releases of users it holds back go to ``session``, which the
    caller commits before ``send_dispatched``: a held delivery, stored as queued in the history
    store (which shares no transaction with PostgreSQL), is released only by those rows. Safe to
    run twice for the same event (items, releases and deliveries have ids of their own).

    An event small enough for one batch per channel is stored already claimed, to be sent
    right in ``send_dispatched``: one broker hop less on the path most events take (one user,
    a channel or two); so are in-app deliveries whatever their number (no provider to wait for,
    so a queue hop would only add work; a broadcast is spread over the worker processes by its
    dispatch parts instead). ``redelivered`` (the dispatch message came back after a worker
    died) lets that send take over deliveries the dead worker left in ``sending``.
    ``split=False`` keeps a large event in one piece (a campaign page: its own fan-out already
    shares the work out)."""
    now = datetime.now(UTC)
    # Millisecond precision, as MongoDB keeps it: a record sent from memory (``send_claimed``)
    # must carry the very updated_at the store holds for its compare-and-set.
    now = now.replace(microsecond=now.microsecond // 1000 * 1000)
    if envelope.topic_page is not None:
        parts = await _topic_page_parts(ctx, session, envelope)
        return Dispatched(envelope, DispatchSummary(0, 0, parts=len(parts)), now, parts=parts)
    user_ids = list(envelope.recipients)
    if split and len(user_ids) > ctx.settings.dispatch_part_size and envelope.part is None:
        # A broadcast: its parts go back on the dispatch queue, one message each, for every
        # worker process to take a share. Each part is an event dispatch of its own for some
        # of the users (delivery ids do not depend on the part), so a part run twice, or all
        # of them published again after this worker died, stores and sends nothing twice.
        parts = [
            envelope.for_users(users, part=n)
            for n, users in enumerate(chunks(user_ids, ctx.settings.dispatch_part_size))
        ]
        return Dispatched(envelope, DispatchSummary(0, 0, parts=len(parts)), now, parts=parts)
    preferences: dict[str, UserPreferences] = {}
    if not envelope.critical:
        preferences = await preferences_of(ctx.engine, user_ids, envelope.tenant_id)
    topic_out = await _topic_opt_outs(session, envelope, preferences)
    if envelope.digest and not envelope.critical:
        collectable = [u for u in user_ids if u not in topic_out]
        now_ids = await _collect_for_digests(session, envelope, collectable, preferences, now)
        user_ids = now_ids + [u for u in user_ids if u in topic_out]
        if not user_ids:
            return Dispatched(envelope, DispatchSummary(queued=0, skipped=0), now)
    plan = await _plan(ctx, envelope, user_ids, preferences, now, topic_out)
    here = plan.sent_here(ctx.settings.delivery_batch_size)
    stored = await _store(ctx, envelope, plan, here, redelivered=redelivered, now=now)
    if plan.held:
        await _hold_for_quiet_hours(session, envelope, plan.held)
    summary = DispatchSummary(
        queued=sum(len(v) for v in plan.queued.values()), skipped=sum(plan.skipped.values())
    )
    return Dispatched(envelope, summary, now, plan=plan, here=here, stored=stored)


async def send_dispatched(
    ctx: DeliveryContext,
    dispatched: Dispatched,
    *,
    profiles: Mapping[str, UserProfile] | None = None,
) -> BatchOutcome:
    """Announce what ``record_dispatch`` stored, send its own batches and enqueue the others
    (or the parts of a broadcast). ``profiles`` are users the caller already has. The outcome
    of the batches sent here is left to the caller (``save_outcome``, then ``hand_on``)."""
    outcome = BatchOutcome()
    await asyncio.gather(*(ctx.queue.enqueue_dispatch(part) for part in dispatched.parts))
    plan, stored = dispatched.plan, dispatched.stored
    if plan is not None and stored is not None:
        envelope = dispatched.envelope
        await _announce_stored(ctx, envelope, plan, stored.records, dispatched.now)
        for sent in await _send_and_enqueue(ctx, envelope, plan, dispatched.here, stored, profiles):
            outcome.add(sent)
    return outcome


def together(ctx: DeliveryContext, envelope: Envelope) -> bool:
    """Whether an event may be dispatched together with others (``record_together``): in-app
    only, for listed users who fit in one batch, and nothing about it kept for later (no
    digest, topics, workflow or cancellation, not a quiet-hours release). Most single events
    are such; the others are dispatched one by one (``record_dispatch``)."""
    return (
        envelope.channels == (Channel.IN_APP,)
        and envelope.user_ids is not None
        and 0 < len(envelope.user_ids) <= ctx.settings.delivery_batch_size
        and envelope.digest is None
        and envelope.digest_of is None
        and envelope.topics is None
        and envelope.topic_page is None
        and not envelope.via_topics
        and not envelope.quiet_released
        and envelope.workflow_id is None
        and not envelope.cancels
    )


async def record_together(
    ctx: DeliveryContext, session: AsyncSession, envelopes: Sequence[Envelope]
) -> list[Dispatched]:
    """``record_dispatch`` for several first deliveries of events that may go ``together``:
    the recipients' preferences read in one query, every event's records stored in one
    insert (the skipped ones: the in-app deliveries themselves are stored with their outcome,
    as ``record_dispatch`` does), the quiet-hours holds added to ``session``, which the caller
    commits before ``send_together``. Safe to run again for the same events: if any record
    already existed, none of the events is taken for this call's own (each is sent as a
    re-run's, ``send_dispatched``)."""
    now = datetime.now(UTC)
    now = now.replace(microsecond=now.microsecond // 1000 * 1000)
    # Read once per tenant among the events (the opt-outs made within it count for its own).
    wanted: dict[str | None, list[str]] = {}
    for e in envelopes:
        if not e.critical:
            wanted.setdefault(e.tenant_id, []).extend(e.recipients)
    preferences = {
        tenant: await preferences_of(ctx.engine, list(dict.fromkeys(users)), tenant)
        for tenant, users in wanted.items()
    }
    plans = await asyncio.gather(
        *(
            _plan(
                ctx,
                e,
                list(e.recipients),
                {} if e.critical else preferences.get(e.tenant_id, {}),
                now,
                {},
            )
            for e in envelopes
        )
    )
    size = ctx.settings.delivery_batch_size
    heres = [plan.sent_here(size) for plan in plans]
    claimed: list[list[DeliveryRecord]] = []
    unstored: list[set[str]] = []
    for plan, here in zip(plans, heres, strict=True):
        mine = set(here.get(Channel.IN_APP, ()))
        claimed.append([preclaimed(r, now) if r.id in mine else r for r in plan.records])
        unstored.append(mine)
    stored_now = [
        r for records, u in zip(claimed, unstored, strict=True) for r in records if r.id not in u
    ]
    first_run = await _add(ctx, stored_now) == len(stored_now)
    if not first_run:
        # Another run got here first: no shortcut, the in-app records are stored as claimed.
        await _add(
            ctx,
            [r for records, u in zip(claimed, unstored, strict=True) for r in records if r.id in u],
        )
    dispatched = []
    for envelope, plan, here, records, u in zip(
        envelopes, plans, heres, claimed, unstored, strict=True
    ):
        if plan.held:
            await _hold_for_quiet_hours(session, envelope, plan.held)
        owned = {r.id: r for r in records} if here and first_run else None
        stored = _Stored(records, owned, frozenset(u) if first_run else frozenset())
        summary = DispatchSummary(
            queued=sum(len(v) for v in plan.queued.values()), skipped=sum(plan.skipped.values())
        )
        dispatched.append(Dispatched(envelope, summary, now, plan=plan, here=here, stored=stored))
    return dispatched


async def send_together(ctx: DeliveryContext, dispatched: Sequence[Dispatched]) -> BatchOutcome:
    """``send_dispatched`` for what ``record_together`` stored: every event's first status
    changes announced in one message, and the in-app deliveries of the events it took for
    its own sent as one batch (``send_claimed_together``); the others as ``send_dispatched``
    sends them."""
    updates: list[dict[str, Any]] = []
    for d in dispatched:
        assert d.plan is not None and d.stored is not None
        updates += _stored_updates(d.envelope, d.plan, d.stored.records, d.now)
    await announce(ctx, updates)
    outcome = BatchOutcome()
    batches = []
    unstored: set[str] = set()
    others = []
    for d in dispatched:
        owned = d.stored.owned if d.stored is not None else None
        if owned is None:
            others.append(d)
            continue
        ids = d.here.get(Channel.IN_APP, ())
        if ids:
            batches.append((d.envelope.without_recipients(), [owned[i] for i in ids]))
            unstored |= d.stored.unstored if d.stored is not None else frozenset()

    async def rest(d: Dispatched) -> list[BatchOutcome]:
        assert d.plan is not None and d.stored is not None
        return await _send_and_enqueue(ctx, d.envelope, d.plan, d.here, d.stored, None)

    async def jointly() -> list[BatchOutcome]:
        return [await send_claimed_together(ctx, batches, unstored=unstored)] if batches else []

    for sent in await asyncio.gather(jointly(), *(rest(d) for d in others)):
        for one in sent:
            outcome.add(one)
    return outcome


async def _topic_page_parts(
    ctx: DeliveryContext, session: AsyncSession, envelope: Envelope
) -> list[Envelope]:
    """Expand one page of the targeted topics' members (keyset over their union, so a user in
    two topics comes once) into a dispatch part, the way a broadcast is split into parts; the
    event's listed users go on with the first page, and a full page hands on the next. A page
    expanded twice hands on the same parts: their deliveries have the same ids."""
    assert envelope.topic_page is not None and envelope.topics
    size = ctx.settings.dispatch_part_size
    found = await topic_service.members_page(
        session, topic_keys=envelope.topics, after=envelope.topic_after or None, size=size + 1
    )
    page = found[:size]
    listed = set(envelope.recipients)
    plain = {"topic_page": None, "topic_after": None}
    parts: list[Envelope] = []
    if envelope.topic_page == 0 and listed:
        # Listed users are sent to as such: topic opt-outs do not apply to them.
        parts.append(envelope.for_users(envelope.recipients, **plain))
    members = [u for u in page if u not in listed]
    if members:
        parts.append(
            envelope.for_users(members, via_topics=True, part=envelope.topic_page, **plain)
        )
    if len(found) > size:
        parts.append(
            envelope.for_users(
                envelope.recipients, topic_page=envelope.topic_page + 1, topic_after=page[-1]
            )
        )
    return parts


async def _topic_opt_outs(
    session: AsyncSession, envelope: Envelope, preferences: Mapping[str, UserPreferences]
) -> dict[str, str]:
    """Users reached through topics who opted out of them, with the reason."""
    if not envelope.via_topics or not envelope.topics or envelope.critical:
        return {}
    return await topic_service.topic_opt_outs(
        session,
        topic_keys=envelope.topics,
        disabled={u: p.disabled_topics for u, p in preferences.items() if p.disabled_topics},
    )


async def _collect_for_digests(
    session: AsyncSession,
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
    # Items are unique per (event, user), so a re-run after a crash keeps nothing twice.
    await digest_service.collect(session, envelope=envelope, users=collected)
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
    topic_out: Mapping[str, str],
) -> _Plan:
    """One record per user and channel: skipped (opted out, over a limit), held for quiet
    hours, or queued. ``topic_out``: users skipped for their topic opt-outs, with why."""
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
                if u not in topic_out and _opted_out(envelope, preferences.get(u), c) is None
            ],
        )
    plan = _Plan()
    for user_id in user_ids:
        prefs = preferences.get(user_id)
        type_opt_out = (
            prefs is not None and envelope.type in prefs.disabled_event_types
        ) or user_id in topic_out
        hold = held_until(prefs, now) if check_quiet else None
        if hold is not None and not type_opt_out:
            plan.held[hold].append(user_id)
        for channel in channels:
            did = delivery_id(event_id, user_id, channel)
            reason = (
                topic_out.get(user_id) or _opted_out(envelope, prefs, channel) or limited.get(did)
            )
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
                    tenant_id=envelope.tenant_id,
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
    session: AsyncSession, envelope: Envelope, held: dict[datetime, list[str]]
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
    await ScheduledEventRepository(session).add_many(rows)


async def _announce_stored(
    ctx: DeliveryContext,
    envelope: Envelope,
    plan: _Plan,
    records: list[DeliveryRecord],
    now: datetime,
) -> None:
    """Count and announce every record as first stored (and its claim, when pre-claimed)."""
    await announce(ctx, _stored_updates(envelope, plan, records, now))


def _stored_updates(
    envelope: Envelope, plan: _Plan, records: list[DeliveryRecord], now: datetime
) -> list[dict[str, Any]]:
    """Count every record as first stored (and its claim, when pre-claimed); the changes to
    announce."""
    for channel in envelope.channels:
        metrics.record_delivery(channel.value, "queued", len(plan.queued.get(channel, ())))
        metrics.record_delivery(channel.value, "skipped", plan.skipped[channel])
    updates = []
    claimed: Counter[str] = Counter()
    for r in records:
        first = r.timeline[0]
        updates.append(delivery_update(r, first.status, now, first.reason, sequence=1))
        if r.status is DeliveryStatus.SENDING:
            updates.append(delivery_update(r, DeliveryStatus.SENDING, now, None, sequence=2))
            claimed[r.channel.value] += 1
    for channel_name, count in claimed.items():
        metrics.record_delivery(channel_name, DeliveryStatus.SENDING.value, count)
    return updates


async def _send_and_enqueue(
    ctx: DeliveryContext,
    envelope: Envelope,
    plan: _Plan,
    here: Mapping[Channel, list[str]],
    stored: _Stored,
    profiles: Mapping[str, UserProfile] | None,
) -> list[BatchOutcome]:
    """Send this dispatch's own batches, enqueue the others for channel tasks; the outcomes
    of the batches sent."""
    size = ctx.settings.delivery_batch_size
    send_envelope = envelope.without_recipients()

    async def send_here(channel: Channel, chunk: Sequence[str]) -> BatchOutcome:
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
        claimed = await claim_batch(
            ctx, envelope=send_envelope, channel=channel, delivery_ids=chunk, attempt=1, resume=True
        )
        return await send_batch(ctx, claimed, profiles=profiles)

    done = await asyncio.gather(
        *(
            send_here(channel, chunk)
            for channel, ids in here.items()
            for chunk in chunks(ids, size)
        ),
        *(
            ctx.queue.enqueue_send(task_messages.send(send_envelope, channel, chunk, attempt=1))
            for channel, ids in plan.queued.items()
            if channel not in here
            for chunk in chunks(ids, size)
        ),
    )
    return [outcome for outcome in done if isinstance(outcome, BatchOutcome)]
