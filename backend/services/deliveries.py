"""From an accepted event to sent messages: dispatch (fan-out into deliveries) and sending.

Exactly-once rests on three things: a delivery's id is derived from (event, user, channel), so a
re-run dispatch inserts nothing new; a sender first moves the delivery from ``queued`` to
``sending`` with a compare-and-set, so a duplicated task message sends nothing; and a message
that RabbitMQ redelivers after a worker died (or a task that is resumed after a crash) may take
over deliveries left in ``sending``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import random
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from backend.broker import Broker
from backend.channels import Channel
from backend.channels.base import (
    ChannelSender,
    OutgoingMessage,
    PermanentChannelError,
    ProviderTry,
    PushSubscription,
    TransientChannelError,
)
from backend.config import Settings
from backend.db.history.base import (
    Attempt,
    DeliveryRecord,
    DeliveryStatus,
    HistoryStore,
    Rendered,
    StatusChange,
)
from backend.db.models import DeadLetter, ScheduledEvent, Template
from backend.db.repositories.events import (
    DeadLetterRepository,
    PushSubscriptionRepository,
    ScheduledEventRepository,
    preferences_of,
)
from backend.db.repositories.inbox import NewInboxItem
from backend.db.repositories.templates import TemplateRepository
from backend.errors import HeraldError, UnavailableError
from backend.observability import metrics, tracing
from backend.observability.logs import log_context
from backend.queues import CHANNEL_QUEUES, DISPATCH, TASK_DISPATCH, TASK_SEND
from backend.services import digests as digest_service
from backend.services import inbox as inbox_service
from backend.services import templates as template_service
from backend.services.digests import due_at as digest_due_at
from backend.services.inbox import RedisLivePublisher
from backend.services.limits import Limits
from backend.services.preferences import held_until
from backend.services.users import UserProfile

log = logging.getLogger(__name__)
_NAMESPACE = uuid.UUID("6f1d3c2a-8f5e-4b7a-9c1d-2e3f4a5b6c7d")
SEND_CONCURRENCY = 64


_NAMESPACE_BYTES = _NAMESPACE.bytes


def delivery_id(event_id: str, user_id: str, channel: Channel | str) -> str:
    """The one id of (event, user, channel): a re-run dispatch produces the same ids.

    ``uuid.uuid5`` of the name, computed without building a UUID object: campaign pages make a
    thousand at a time, and ``uuid5()`` and ``str()`` were 7% of a worker's CPU there."""
    kind = channel.value if isinstance(channel, Channel) else Channel(channel).value
    name = f"{event_id}/{user_id}/{kind}"
    raw = bytearray(hashlib.sha1(_NAMESPACE_BYTES + name.encode()).digest()[:16])  # noqa: S324
    raw[6] = (raw[6] & 0x0F) | 0x50  # version 5
    raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


class DeliveryQueue(Protocol):
    async def enqueue_send(
        self,
        envelope: dict[str, Any],
        channel: Channel,
        delivery_ids: Sequence[str],
        *,
        attempt: int,
        countdown: float | None = None,
        resume: bool = False,
    ) -> None: ...

    async def enqueue_dispatch(self, envelope: dict[str, Any]) -> None: ...


class BrokerDeliveryQueue:
    """Enqueues channel batches as Celery task messages through the confirming publisher."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker

    async def enqueue_send(
        self,
        envelope: dict[str, Any],
        channel: Channel,
        delivery_ids: Sequence[str],
        *,
        attempt: int,
        countdown: float | None = None,
        resume: bool = False,
    ) -> None:
        await self.broker.publish_task(
            CHANNEL_QUEUES[channel],
            TASK_SEND,
            kwargs={
                "event": envelope,
                "channel": channel.value,
                "delivery_ids": list(delivery_ids),
                "attempt": attempt,
                "resume": resume,
            },
            countdown=countdown,
        )

    async def enqueue_dispatch(self, envelope: dict[str, Any]) -> None:
        await self.broker.publish_task(
            DISPATCH, TASK_DISPATCH, kwargs={"event": envelope}, task_id=_part_task_id(envelope)
        )


def _part_task_id(envelope: dict[str, Any]) -> str:
    return f"{envelope['id']}:part-{envelope['part']}"


class TemplateCache:
    """Templates by slug for a few seconds: a worker sends the same template in batch after
    batch, and an edit reaches deliveries within ``ttl`` seconds."""

    def __init__(self, ttl: float = 5.0) -> None:
        self.ttl = ttl
        self._entries: dict[str, tuple[float, Template | None]] = {}

    async def get(self, session: AsyncSession, slug: str) -> Template | None:
        now = time.monotonic()
        hit = self._entries.get(slug)
        if hit is not None and hit[0] > now:
            return hit[1]
        template = await TemplateRepository(session).get_by_slug(slug)
        self._entries[slug] = (now + self.ttl, template)
        return template


class UserLookup(Protocol):
    async def get_many(self, user_ids: Sequence[str]) -> dict[str, UserProfile | None]: ...


class StatusWebhooks(Protocol):
    async def notify(self, updates: list[dict[str, Any]]) -> None:
        """Hand status changes to the registered webhook endpoints (backend.services.webhooks)."""


@dataclass
class DeliveryContext:
    """What dispatch and sending need; one per worker process."""

    settings: Settings
    sessionmaker: async_sessionmaker[AsyncSession]
    history: HistoryStore
    queue: DeliveryQueue
    users: UserLookup
    senders: dict[Channel, ChannelSender] = field(default_factory=dict)
    live: RedisLivePublisher | None = None
    templates: TemplateCache = field(default_factory=lambda: TemplateCache())
    limits: Limits | None = None
    webhooks: StatusWebhooks | None = None

    @property
    def engine(self) -> AsyncEngine:
        """The sessionmaker's engine: hot-path statements use its driver connections."""
        engine: AsyncEngine = self.sessionmaker.kw["bind"]
        return engine


def _chunks(items: Sequence[str], size: int) -> list[Sequence[str]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _send_envelope(envelope: dict[str, Any]) -> dict[str, Any]:
    # Channel tasks do not need the recipient list; it can be long.
    return {k: v for k, v in envelope.items() if k != "user_ids"}


class _RecordingHistory:
    """Passes calls to the history store and remembers every successful status change, so a
    batch can announce them on the live delivery feed in one message.

    ``unstored`` records (in-app, sent inline) are not in the store yet: a batch change to
    them is applied here and the records inserted with it, once; any other change stores them
    first, as they are."""

    def __init__(
        self,
        history: HistoryStore,
        records: dict[str, DeliveryRecord],
        unstored: Collection[str] = (),
    ) -> None:
        self._history = history
        self._records = records
        self._unstored = set(unstored)
        self.updates: list[dict[str, Any]] = []

    def _record(
        self, delivery_id: str, status: DeliveryStatus, at: datetime, reason: str | None
    ) -> None:
        record = self._records.get(delivery_id)
        if record is not None:
            self.updates.append(delivery_update(record, status, at, reason))
            metrics.record_delivery(record.channel.value, status.value)

    async def _store(self, delivery_ids: Collection[str]) -> None:
        waiting = [self._records[i] for i in delivery_ids if i in self._unstored]
        if waiting:
            await self._history.add(waiting)
            self._unstored.difference_update(r.id for r in waiting)

    async def transition_many(
        self, delivery_ids: Sequence[str], status: DeliveryStatus, *, at: datetime, **kwargs: Any
    ) -> set[str]:
        fresh = [i for i in delivery_ids if i in self._unstored]
        changed: set[str] = set()
        if fresh:
            reason = kwargs.get("reason")
            attempt: Attempt | None = kwargs.get("attempt")
            rendered: dict[str, Rendered] = kwargs.get("rendered") or {}
            done = [
                _applied(self._records[i], status, at, reason, attempt, rendered.get(i))
                for i in fresh
            ]
            # Inserted as they end up. One that exists already was stored by another run of
            # the same event: moved on as the store's own if it is still pending there.
            inserted = await self._history.add(done)
            self._unstored.difference_update(fresh)
            if inserted < len(done):
                pending = frozenset({DeliveryStatus.QUEUED, DeliveryStatus.SENDING})
                await self._history.transition_many(
                    fresh, status, at=at, **{**kwargs, "expected": pending}
                )
            changed.update(fresh)
        rest = [i for i in delivery_ids if i not in changed]
        if rest:
            changed |= await self._history.transition_many(rest, status, at=at, **kwargs)
        for delivery_id in delivery_ids:
            if delivery_id in changed:
                self._record(delivery_id, status, at, kwargs.get("reason"))
        return changed

    async def transition(
        self, delivery_id: str, status: DeliveryStatus, *, at: datetime, **kwargs: Any
    ) -> bool:
        await self._store([delivery_id])
        changed = await self._history.transition(delivery_id, status, at=at, **kwargs)
        if changed:
            self._record(delivery_id, status, at, kwargs.get("reason"))
        return changed


def _applied(
    record: DeliveryRecord,
    status: DeliveryStatus,
    at: datetime,
    reason: str | None,
    attempt: Attempt | None,
    rendered: Rendered | None,
) -> DeliveryRecord:
    """The record after a status change, as the store's transition would leave it."""
    shown = rendered or Rendered()
    return dataclasses.replace(
        record,
        status=status,
        updated_at=at,
        timeline=[*record.timeline, StatusChange(status, at, reason)],
        attempts=[*record.attempts, attempt] if attempt is not None else record.attempts,
        subject=shown.subject if shown.subject is not None else record.subject,
        title=shown.title if shown.title is not None else record.title,
        body=shown.body if shown.body is not None else record.body,
        locale=shown.locale if shown.locale is not None else record.locale,
    )


async def _add(ctx: DeliveryContext, records: Sequence[DeliveryRecord]) -> int:
    inserted = 0
    for start in range(0, len(records), 1000):
        inserted += await ctx.history.add(records[start : start + 1000])
    return inserted


def _claimed(record: DeliveryRecord, at: datetime) -> DeliveryRecord:
    """The new record as stored already claimed for sending: queued, then sending."""
    return dataclasses.replace(
        record,
        status=DeliveryStatus.SENDING,
        timeline=[*record.timeline, StatusChange(DeliveryStatus.SENDING, at)],
    )


def delivery_update(
    record: DeliveryRecord, status: DeliveryStatus, at: datetime, reason: str | None
) -> dict[str, Any]:
    """One entry of the live delivery feed."""
    return {
        "id": record.id,
        "event_id": record.event_id,
        "event_type": record.event_type,
        "campaign_id": record.campaign_id,
        "user_id": record.user_id,
        "channel": record.channel.value,
        "status": status.value,
        "at": at.isoformat(),
        "reason": reason,
    }


@dataclass(frozen=True, slots=True)
class DispatchSummary:
    queued: int
    skipped: int
    parts: int = 0  # a broadcast handed on in this many parts


async def dispatch_event(
    ctx: DeliveryContext,
    envelope: dict[str, Any],
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
    # Millisecond precision, as MongoDB keeps it: a record sent from memory (``known`` below)
    # must carry the very updated_at the store holds for its compare-and-set.
    now = now.replace(microsecond=now.microsecond // 1000 * 1000)
    event_id = envelope["id"]
    user_ids: list[str] = envelope["user_ids"]
    part_size = ctx.settings.dispatch_part_size
    if split and len(user_ids) > part_size and "part" not in envelope:
        # A broadcast: its parts go back on the dispatch queue, one message each, for every
        # worker process to take a share. Each part is an event dispatch of its own for some
        # of the users (delivery ids do not depend on the part), so a part run twice, or all
        # of them published again after this worker died, stores and sends nothing twice.
        parts = _chunks(user_ids, part_size)
        await asyncio.gather(
            *(
                ctx.queue.enqueue_dispatch({**envelope, "user_ids": list(users), "part": n})
                for n, users in enumerate(parts)
            )
        )
        return DispatchSummary(queued=0, skipped=0, parts=len(parts))
    channels = [Channel(c) for c in envelope["channels"]]
    critical = bool(envelope.get("critical"))
    preferences = {}
    if not critical:
        preferences = await preferences_of(ctx.engine, user_ids)
    if envelope.get("digest") and not critical:
        # A digested type: each user's part waits for their digest (unless they chose instant).
        collected = {
            u: when
            for u in user_ids
            if (
                when := digest_due_at(envelope["digest"], envelope["type"], preferences.get(u), now)
            )
            is not None
        }
        if collected:
            async with ctx.sessionmaker() as session:
                await digest_service.collect(session, envelope=envelope, users=collected)
                await session.commit()
            user_ids = [u for u in user_ids if u not in collected]
            if not user_ids:
                return DispatchSummary(queued=0, skipped=0)

    records: list[DeliveryRecord] = []
    queued: dict[Channel, list[str]] = defaultdict(list)
    skipped: Counter[Channel] = Counter()
    # Quiet hours hold a user's non-critical deliveries (queued) until the window ends; a
    # released hold comes back here marked, and is not held again.
    held: dict[datetime, list[str]] = defaultdict(list)
    check_quiet = not critical and not envelope.get("quiet_released")

    def opted_out(prefs: Any, channel: Channel) -> str | None:
        if prefs is not None and envelope["type"] in prefs.disabled_event_types:
            return f"the user opted out of '{envelope['type']}' notifications"
        if prefs is not None and channel.value in prefs.disabled_channels:
            return f"the user opted out of the {channel.value} channel"
        return None

    # Throttles and budgets count what the user would otherwise receive (a released quiet-hours
    # hold was counted when it was held).
    limited: dict[str, str] = {}
    if ctx.limits is not None and not critical and not envelope.get("quiet_released"):
        throttle = envelope.get("throttle")
        limited = await ctx.limits.over_limit(
            event_id=event_id,
            event_type=envelope["type"],
            throttle=(int(throttle[0]), int(throttle[1])) if throttle else None,
            deliveries=[
                (delivery_id(event_id, u, c), u, c)
                for u in user_ids
                for c in channels
                if opted_out(preferences.get(u), c) is None
            ],
        )
    for user_id in user_ids:
        prefs = preferences.get(user_id)
        type_opt_out = prefs is not None and envelope["type"] in prefs.disabled_event_types
        hold = held_until(prefs, now) if check_quiet else None
        if hold is not None and not type_opt_out:
            held[hold].append(user_id)
        for channel in channels:
            did = delivery_id(event_id, user_id, channel)
            reason = opted_out(prefs, channel) or limited.get(did)
            status = DeliveryStatus.SKIPPED if reason else DeliveryStatus.QUEUED
            note = reason
            if hold is not None and not reason:
                note = f"held for the user's quiet hours until {hold.isoformat()}"
            records.append(
                DeliveryRecord(
                    id=did,
                    event_id=event_id,
                    event_type=envelope["type"],
                    user_id=user_id,
                    channel=channel,
                    created_at=now,
                    updated_at=now,
                    status=status,
                    campaign_id=envelope.get("campaign_id"),
                    template_slug=envelope.get("template_slug"),
                    locale=envelope.get("locale"),
                    timeline=[StatusChange(status, now, note)],
                )
            )
            if reason:
                skipped[channel] += 1
            elif hold is None:
                queued[channel].append(did)
    size = ctx.settings.delivery_batch_size
    small = all(len(ids) <= size for ids in queued.values())
    here = {c: ids for c, ids in queued.items() if small or c is Channel.IN_APP}
    # Deliveries sent right here are stored already claimed (``sending``, with their queued
    # entry before it): one UPDATE less on the path most events take. Not on a re-run, whose
    # records may be another worker's.
    preclaimed = not redelivered and bool(here)
    if preclaimed:
        mine = {i for ids in here.values() for i in ids}
        records = [_claimed(r, now) if r.id in mine else r for r in records]
    # In-app deliveries sent right here reach the history once, when their inbox item is
    # stored: already sent (or, if something goes wrong first, stored then as they are and
    # moved on from there). An insert and an UPDATE of every row become one insert. The inbox
    # append is idempotent, so a duplicate run stores and sends nothing twice.
    unstored = (
        set(here.get(Channel.IN_APP, ()))
        if preclaimed and not envelope.get("quiet_released")  # a release: records exist
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
    known = {r.id: r for r in records} if first_run else None
    if held:
        await _hold_for_quiet_hours(ctx, envelope, held)
    for channel in channels:
        metrics.record_delivery(channel.value, "queued", len(queued.get(channel, ())))
        metrics.record_delivery(channel.value, "skipped", skipped[channel])
    updates = []
    for r in records:
        first = r.timeline[0]
        updates.append(delivery_update(r, first.status, now, first.reason))
        if r.status is DeliveryStatus.SENDING:
            updates.append(delivery_update(r, DeliveryStatus.SENDING, now, None))
            metrics.record_delivery(r.channel.value, DeliveryStatus.SENDING.value)
    await announce(ctx, updates)
    # A re-run (redelivered dispatch) re-enqueues only what is still queued; the compare-and-set
    # in send_batch makes a duplicate harmless anyway. Pre-claimed records that met existing
    # ones (a duplicate dispatch message) are not known to be this call's: they are left to
    # the lease, as a dead worker's would be.
    claimed = preclaimed and known is not None
    resume = redelivered or (preclaimed and known is None)
    send_envelope = _send_envelope(envelope)
    await asyncio.gather(
        *(
            send_batch(
                ctx,
                envelope=send_envelope,
                channel=channel,
                delivery_ids=chunk,
                attempt=1,
                resume=resume,
                known=known,
                claimed=claimed,
                unstored=unstored,
                profiles=profiles,
            )
            for channel, ids in here.items()
            for chunk in _chunks(ids, size)
        ),
        *(
            ctx.queue.enqueue_send(send_envelope, channel, chunk, attempt=1)
            for channel, ids in queued.items()
            if channel not in here
            for chunk in _chunks(ids, size)
        ),
    )
    return DispatchSummary(
        queued=sum(len(v) for v in queued.values()), skipped=sum(skipped.values())
    )


async def _hold_for_quiet_hours(
    ctx: DeliveryContext, envelope: dict[str, Any], held: dict[datetime, list[str]]
) -> None:
    """Store the held users' part of the event to be dispatched again when their quiet hours
    end (the scheduled-event release, not a broker delay: holds last hours). One row per end
    time, with an id derived from the event and that time, so a re-run stores nothing new."""
    rows = [
        ScheduledEvent(
            id=uuid.uuid5(_NAMESPACE, f"{envelope['id']}/quiet/{until.isoformat()}"),
            due_at=until,
            envelope={**envelope, "user_ids": users, "quiet_released": True},
        )
        for until, users in held.items()
    ]
    async with ctx.sessionmaker() as session:
        await ScheduledEventRepository(session).add_many(rows)
        await session.commit()


def backoff_seconds(settings: Settings, attempt: int) -> float:
    """Exponential backoff with jitter: base·2^(attempt-1), capped, times 0.5-1.0."""
    delay = min(settings.retry_max_seconds, settings.retry_base_seconds * 2 ** (attempt - 1))
    return delay * (0.5 + random.random() / 2)  # noqa: S311 - jitter, not security


@dataclass
class BatchOutcome:
    sent: int = 0
    skipped: int = 0
    retried: int = 0
    failed: int = 0
    dead: int = 0
    ignored: int = 0  # already handled by another task


def _render_context(envelope: dict[str, Any], user: UserProfile) -> dict[str, Any]:
    return {
        "user": user.to_context(),
        "payload": envelope.get("payload") or {},
        "event": {
            "id": envelope["id"],
            "type": envelope["type"],
            "created_at": envelope.get("created_at"),
        },
    }


async def send_batch(
    ctx: DeliveryContext,
    *,
    envelope: dict[str, Any],
    channel: Channel,
    delivery_ids: Sequence[str],
    attempt: int,
    resume: bool = False,
    known: dict[str, DeliveryRecord] | None = None,
    claimed: bool = False,
    unstored: Collection[str] = (),
    profiles: Mapping[str, UserProfile] | None = None,
) -> BatchOutcome:
    """Render and send a batch of one channel's deliveries concurrently.

    ``known`` are records the caller has just inserted (so they are what the store holds),
    and ``profiles`` users it already has: each spares a look-up. ``claimed``: the caller
    inserted them already in ``sending``, so they are this batch's without a claim;
    ``unstored``: of those, the ones it left to be stored with their outcome.

    ``resume`` (a redelivered or resumed task) allows taking over deliveries left in
    ``sending`` by a worker that died mid-batch, once their lease has run out: a claim younger
    than ``delivery_lease_seconds`` may belong to a worker still sending, so those deliveries
    are looked at again when it ends.
    """
    outcome = BatchOutcome()
    if known is not None and all(i in known for i in delivery_ids):
        records = {i: known[i] for i in delivery_ids}
    else:
        records = {r.id: r for r in await ctx.history.get_many(delivery_ids)}
    history = _RecordingHistory(ctx.history, records, unstored=unstored if claimed else ())
    takeable = (
        {DeliveryStatus.QUEUED, DeliveryStatus.SENDING} if resume else {DeliveryStatus.QUEUED}
    )
    now = datetime.now(UTC)
    lease = timedelta(seconds=ctx.settings.delivery_lease_seconds)

    def leased(record: DeliveryRecord) -> bool:
        return record.status is DeliveryStatus.SENDING and record.updated_at > now - lease

    present = [records[i] for i in delivery_ids if i in records]
    if claimed:
        mine = present
    else:
        if resume:
            still_leased = [r for r in present if leased(r)]
            if still_leased:
                wait = max((r.updated_at + lease - now).total_seconds() for r in still_leased)
                await ctx.queue.enqueue_send(
                    envelope,
                    channel,
                    [r.id for r in still_leased],
                    attempt=attempt,
                    countdown=wait + 1,
                    resume=True,
                )
        candidates = [r for r in present if r.status in takeable and not leased(r)]
        # The record's updated_at as read makes each claim exclusive, takeovers of `sending` too:
        # of two tasks racing for a delivery, only one sees it unchanged.
        won = await history.transition_many(
            [r.id for r in candidates],
            DeliveryStatus.SENDING,
            at=now,
            expected=frozenset(takeable),
            unchanged_since={r.id: r.updated_at for r in candidates},
        )
        mine = [r for r in candidates if r.id in won]
    outcome.ignored = len(delivery_ids) - len(mine)
    if not mine:
        return outcome

    dead_letters: list[DeadLetter] = []
    retry_ids: list[str] = []
    max_attempts = ctx.settings.delivery_max_attempts
    retry_delay = backoff_seconds(ctx.settings, attempt)

    async def fail(record: DeliveryRecord, error: HeraldError, *, permanent: bool) -> None:
        at = datetime.now(UTC)
        provider = getattr(error, "provider", None)
        record_attempt = Attempt(number=attempt, at=at, provider=provider, error=error.message)
        if not permanent and attempt < max_attempts:
            await history.transition(
                record.id,
                DeliveryStatus.QUEUED,
                at=at,
                expected=frozenset({DeliveryStatus.SENDING}),
                reason=(
                    f"attempt {attempt} failed ({error.message}); retrying in {retry_delay:.0f} s"
                ),
                attempt=record_attempt,
            )
            retry_ids.append(record.id)
            outcome.retried += 1
            metrics.record_retry(channel.value)
            return
        status = DeliveryStatus.FAILED if permanent else DeliveryStatus.DEAD
        reason = (
            error.message if permanent else f"gave up after {attempt} attempts: {error.message}"
        )
        await history.transition(
            record.id,
            status,
            at=at,
            expected=frozenset({DeliveryStatus.SENDING}),
            reason=reason,
            attempt=record_attempt,
        )
        dead_letters.append(
            DeadLetter(
                delivery_id=record.id,
                event_id=envelope["id"],
                event_type=envelope["type"],
                user_id=record.user_id,
                channel=channel.value,
                envelope=envelope,
                error=reason,
                attempts=attempt,
            )
        )
        if permanent:
            outcome.failed += 1
        else:
            outcome.dead += 1

    # Everything the batch needs, fetched once.
    try:
        async with ctx.sessionmaker() as session:
            template = await ctx.templates.get(session, envelope["template_slug"])
            subscriptions: dict[str, list[PushSubscription]] = defaultdict(list)
            if channel is Channel.PUSH:
                rows = await PushSubscriptionRepository(session).for_users(
                    [r.user_id for r in mine]
                )
                for row in rows:
                    subscriptions[row.user_id].append(
                        PushSubscription(endpoint=row.endpoint, p256dh=row.p256dh, auth=row.auth)
                    )
        given = profiles or {}
        wanted = list({r.user_id for r in mine if r.user_id not in given})
        users: dict[str, UserProfile | None] = {u: given[u] for u in given}
        if wanted:
            users.update(await ctx.users.get_many(wanted))
    except UnavailableError as exc:
        # The auth service or the database is down: the whole batch is worth retrying.
        await asyncio.gather(*(fail(r, exc, permanent=False) for r in mine))
        await _after_batch(
            ctx, envelope, channel, history, retry_ids, dead_letters, attempt, retry_delay
        )
        return outcome

    content = template_service.template_content(template) if template is not None else None
    expired: list[str] = []
    limit = asyncio.Semaphore(SEND_CONCURRENCY)

    async def deliver(record: DeliveryRecord) -> None:
        async with limit:
            user = users.get(record.user_id)
            if user is None:
                await history.transition(
                    record.id,
                    DeliveryStatus.SKIPPED,
                    at=datetime.now(UTC),
                    expected=frozenset({DeliveryStatus.SENDING}),
                    reason="unknown user: the auth service has no such user",
                )
                outcome.skipped += 1
                return
            if content is None:
                await fail(
                    record,
                    HeraldError(f"the template '{envelope['template_slug']}' no longer exists"),
                    permanent=True,
                )
                return
            try:
                item = template_service.select_content(
                    content, channel=channel, locale=envelope.get("locale") or user.locale
                )
                rendered = template_service.render_content(item, _render_context(envelope, user))
            except HeraldError as exc:  # a render error, or no content for the channel
                await fail(record, exc, permanent=True)
                return
            message = OutgoingMessage(
                delivery_id=record.id,
                event_id=envelope["id"],
                event_type=envelope["type"],
                channel=channel,
                user=user,
                subject=rendered.subject,
                title=rendered.title,
                body=rendered.body,
                html=rendered.html,
                data=envelope.get("payload") or {},
                push_subscriptions=tuple(subscriptions.get(record.user_id, ())),
                critical=bool(envelope.get("critical")),
            )
            stored = Rendered(
                subject=rendered.subject,
                title=rendered.title,
                body=rendered.body if channel is Channel.IN_APP else None,
                locale=rendered.locale,
            )
            if channel is Channel.IN_APP:
                # In-app items are stored in one transaction for the whole batch, below.
                in_app.append((record, message, stored))
                return
            started = time.perf_counter()
            try:
                with (
                    log_context(delivery_id=record.id, event_id=envelope["id"]),
                    tracing.span(
                        f"send {channel.value}", delivery_id=record.id, event_id=envelope["id"]
                    ),
                ):
                    result = await ctx.senders[channel].send(message)
            except (TransientChannelError, PermanentChannelError) as exc:
                # Push errors still name the subscriptions the push service reported gone.
                expired.extend(getattr(exc, "expired_endpoints", ()))
                await _record_provider_tries(ctx, record.id, attempt, exc.tries)
                await fail(record, exc, permanent=isinstance(exc, PermanentChannelError))
                return
            metrics.observe_send_latency(channel.value, time.perf_counter() - started)
            await _record_provider_tries(ctx, record.id, attempt, result.failed_tries)
            expired.extend(result.expired_endpoints)
            await history.transition(
                record.id,
                DeliveryStatus.SENT,
                at=datetime.now(UTC),
                expected=frozenset({DeliveryStatus.SENDING}),
                rendered=stored,
                provider_message_id=result.provider_message_id,
                attempt=Attempt(number=attempt, at=datetime.now(UTC), provider=result.provider),
            )
            outcome.sent += 1

    in_app: list[tuple[DeliveryRecord, OutgoingMessage, Rendered]] = []
    await asyncio.gather(*(deliver(r) for r in mine))
    if in_app:
        await _deliver_in_app(ctx, history, in_app, attempt, fail)
    if expired:
        async with ctx.sessionmaker() as session:
            await PushSubscriptionRepository(session).delete(endpoints=expired)
            await session.commit()
    await _after_batch(
        ctx, envelope, channel, history, retry_ids, dead_letters, attempt, retry_delay
    )
    return outcome


async def _record_provider_tries(
    ctx: DeliveryContext, delivery_id: str, attempt: int, tries: Sequence[ProviderTry]
) -> None:
    """Providers that failed this attempt before the next one was tried (failover): one
    attempt entry each, the delivery staying in ``sending``. Not announced: still sending."""
    for number, tried in enumerate(tries):
        following = tries[number + 1].provider if number + 1 < len(tries) else "the next"
        await ctx.history.transition(
            delivery_id,
            DeliveryStatus.SENDING,
            at=tried.at,
            expected=frozenset({DeliveryStatus.SENDING}),
            reason=f"{tried.provider} failed ({tried.error}); trying {following} provider",
            attempt=Attempt(
                number=attempt, at=tried.at, provider=tried.provider, error=tried.error
            ),
        )


async def _deliver_in_app(
    ctx: DeliveryContext,
    history: _RecordingHistory,
    items: list[tuple[DeliveryRecord, OutgoingMessage, Rendered]],
    attempt: int,
    fail: Any,
) -> None:
    """The inbox is the record of truth: store the batch's items in one transaction, mark them
    sent, then publish them live. A lost publish is recovered by subscriptions replaying from
    the inbox, so it never fails a delivery."""
    new_items = [
        NewInboxItem(
            delivery_id=record.id,
            user_id=record.user_id,
            event_id=message.event_id,
            event_type=message.event_type,
            title=message.title,
            body=message.body,
            data=message.data,
            created_at=datetime.now(UTC),
        )
        for record, message, _ in items
    ]
    try:
        entries = await inbox_service.store_items(ctx.engine, new_items)
    except (OSError, SQLAlchemyError) as exc:
        error = UnavailableError(f"the inbox could not be written: {exc}")
        await asyncio.gather(*(fail(record, error, permanent=False) for record, _, _ in items))
        return
    at = datetime.now(UTC)
    await history.transition_many(
        [record.id for record, _, _ in items],
        DeliveryStatus.SENT,
        at=at,
        expected=frozenset({DeliveryStatus.SENDING}),
        rendered={record.id: stored for record, _, stored in items},
        attempt=Attempt(number=attempt, at=at, provider="inbox"),
    )
    if ctx.live is not None:
        await ctx.live.publish_many([(e.user_id, e.to_message()) for e in entries])


async def _after_batch(
    ctx: DeliveryContext,
    envelope: dict[str, Any],
    channel: Channel,
    history: _RecordingHistory,
    retry_ids: list[str],
    dead_letters: list[DeadLetter],
    attempt: int,
    retry_delay: float,
) -> None:
    """Record the batch's dead letters, enqueue its retries, announce its status changes."""
    if dead_letters:
        async with ctx.sessionmaker() as session:
            await DeadLetterRepository(session).add(dead_letters)
            await session.commit()
        metrics.record_dead_letter(channel.value, len(dead_letters))
    if retry_ids:
        await ctx.queue.enqueue_send(
            envelope,
            channel,
            retry_ids,
            attempt=attempt + 1,
            countdown=retry_delay,
        )
    await announce(ctx, history.updates)


async def announce(ctx: DeliveryContext, updates: list[dict[str, Any]]) -> None:
    """Tell the world about status changes: the live delivery feed (every change of a batch
    in one message). The one place status changes leave the delivery path."""
    if not updates:
        return
    if ctx.live is not None:
        await ctx.live.publish_delivery_updates(updates)
    if ctx.webhooks is not None:
        await ctx.webhooks.notify(updates)
