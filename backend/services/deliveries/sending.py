"""Sending: render a batch of one channel's claimed deliveries and hand them to the channel's
sender concurrently; record each outcome, retry what may succeed later, dead-letter the rest.

A batch goes through explicit steps, each run by the caller (the Celery task) where its
transaction allows: ``claim_batch`` (a channel task's delivery ids: the records are read and
claimed, durably, before any provider is called), ``send_claimed`` (render and send; also what
dispatch uses for records it has just stored already claimed; it commits only the dead letters
of deliveries that failed for good, before it records them failed), ``save_outcome`` (the
batch's other PostgreSQL writes, in the caller's transaction) and, once that committed,
``hand_on`` (enqueue the retries, announce the status changes).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from backend.channels import CHAT_CHANNELS, Channel
from backend.channels.base import (
    MobileDevice,
    OutgoingMessage,
    PermanentChannelError,
    ProviderTry,
    PushSubscription,
    TransientChannelError,
)
from backend.db.history.base import Attempt, DeliveryRecord, DeliveryStatus, Rendered
from backend.db.models import DeadLetter, Template
from backend.db.repositories.dead_letters import DeadLetterRepository
from backend.db.repositories.recipients import RecipientAddressRepository
from backend.errors import HeraldError, UnavailableError
from backend.observability import metrics, tracing
from backend.observability.logs import log_context
from backend.services import recipients, suppressions, task_messages, tracking, unsubscribe
from backend.services import templates as template_service
from backend.services.deliveries.claims import claim
from backend.services.deliveries.context import DeliveryContext
from backend.services.deliveries.in_app import InAppItem, deliver_in_app
from backend.services.deliveries.records import RecordingHistory, announce
from backend.services.envelope import Envelope
from backend.services.retries import backoff_seconds
from backend.services.tenants import Branding
from backend.services.users import UserProfile

SEND_CONCURRENCY = 64


@dataclass
class Retry:
    """Deliveries of one batch back in ``queued``, for the next attempt after a delay."""

    envelope: Envelope
    channel: Channel
    delivery_ids: list[str]
    attempt: int
    countdown: float


@dataclass
class BatchOutcome:
    """What became of one or more batches, and what they leave to their caller: PostgreSQL
    writes for its transaction (``save_outcome``), then retries and announcements for after
    its commit (``hand_on``). ``dead_letters`` are committed already (``_Batch.conclude``)."""

    sent: int = 0
    skipped: int = 0
    retried: int = 0
    failed: int = 0
    dead: int = 0
    ignored: int = 0  # already handled by another task
    dead_letters: list[DeadLetter] = field(default_factory=list)
    # Push endpoints reported gone, with what the push service answered for each.
    expired_endpoints: dict[str, str] = field(default_factory=dict)
    # Mobile device tokens FCM or APNs reported gone, likewise.
    expired_devices: dict[str, str] = field(default_factory=dict)
    # Chats a chat service reported gone (a Telegram user who blocked the bot), by (channel,
    # chat id), likewise.
    expired_chats: dict[tuple[str, str], str] = field(default_factory=dict)
    used_endpoints: list[str] = field(default_factory=list)  # push endpoints that took a message
    retries: list[Retry] = field(default_factory=list)
    updates: list[dict[str, Any]] = field(default_factory=list)  # status changes to announce

    @property
    def writes(self) -> bool:
        """Whether ``save_outcome`` has anything to write (most batches have not: a session
        opened and committed for nothing costs about 0.1 ms of CPU)."""
        return bool(
            self.expired_endpoints
            or self.expired_devices
            or self.expired_chats
            or self.used_endpoints
        )

    def add(self, other: BatchOutcome) -> None:
        """Count ``other`` in, and take on what it leaves to the caller."""
        self.sent += other.sent
        self.skipped += other.skipped
        self.retried += other.retried
        self.failed += other.failed
        self.dead += other.dead
        self.ignored += other.ignored
        self.dead_letters.extend(other.dead_letters)
        self.expired_endpoints.update(other.expired_endpoints)
        self.expired_devices.update(other.expired_devices)
        self.expired_chats.update(other.expired_chats)
        self.used_endpoints.extend(other.used_endpoints)
        self.retries.extend(other.retries)
        self.updates.extend(other.updates)


@dataclass
class ClaimedBatch:
    """A channel batch after its claim: the deliveries this task won, to send."""

    envelope: Envelope
    channel: Channel
    attempt: int
    history: RecordingHistory
    mine: list[DeliveryRecord]
    ignored: int  # already handled by another task


async def claim_batch(
    ctx: DeliveryContext,
    *,
    envelope: Envelope,
    channel: Channel,
    delivery_ids: Sequence[str],
    attempt: int,
    resume: bool = False,
) -> ClaimedBatch:
    """Read a batch of one channel's deliveries and claim them (``claims.claim``). The claim
    is in the history store when this returns.

    ``resume`` (a redelivered or resumed task) allows taking over deliveries left in
    ``sending`` by a worker that died mid-batch, once their lease has run out."""
    records = {r.id: r for r in await ctx.history.get_many(delivery_ids)}
    history = RecordingHistory(ctx.history, records)
    mine = await claim(
        ctx,
        history,
        envelope=envelope,
        channel=channel,
        records=records,
        delivery_ids=delivery_ids,
        attempt=attempt,
        resume=resume,
    )
    return ClaimedBatch(envelope, channel, attempt, history, mine, len(delivery_ids) - len(mine))


async def send_claimed(
    ctx: DeliveryContext,
    *,
    envelope: Envelope,
    channel: Channel,
    records: Sequence[DeliveryRecord],
    attempt: int,
    unstored: Collection[str] = (),
    profiles: Mapping[str, UserProfile] | None = None,
    history: RecordingHistory | None = None,
) -> BatchOutcome:
    """Render and send claimed records (``sending``) concurrently: those of ``claim_batch``,
    or records the caller has just stored already claimed, which are what the store holds
    and this batch's without a claim. ``unstored``: of those, the ones it left to be stored
    with their outcome (in-app, see ``RecordingHistory``). ``profiles`` are users the caller
    already has: each spares a look-up. Only dead letters are committed: see ``save_outcome``."""
    if history is None:
        history = RecordingHistory(ctx.history, {r.id: r for r in records}, unstored)
    batch = _Batch(ctx, envelope, channel, attempt, history)
    if records:
        await batch.send(list(records), profiles)
    batch.outcome.updates = history.updates
    return batch.outcome


async def send_claimed_together(
    ctx: DeliveryContext,
    batches: Sequence[tuple[Envelope, Sequence[DeliveryRecord]]],
    *,
    unstored: Collection[str] = (),
) -> BatchOutcome:
    """In-app batches of several events (first attempts, claimed by the caller as
    ``send_claimed``'s are) sent as one: their users looked up together, and every item of
    every batch stored in the inbox in one statement, published live in one Redis call
    and recorded in the history store in one insert (``deliver_in_app``). Each event keeps
    its own template and rendering. Only dead letters are committed: see ``save_outcome``."""
    records = {r.id: r for _, batch in batches for r in batch}
    history = RecordingHistory(ctx.history, records, unstored)
    profiles: Mapping[str, UserProfile | None] | None = None
    wanted = list(dict.fromkeys(r.user_id for r in records.values()))
    try:
        profiles = await ctx.users.get_many(wanted)
    except UnavailableError:
        profiles = None  # each batch looks its users up again, and retries if that fails
    parts = [_Batch(ctx, envelope, Channel.IN_APP, 1, history) for envelope, _ in batches]
    await asyncio.gather(
        *(
            part.prepare(list(batch), profiles)
            for part, (_, batch) in zip(parts, batches, strict=True)
        )
    )
    items = [item for part in parts for item in part.in_app]
    if items:
        try:
            await deliver_in_app(ctx, history, items, 1)
        except UnavailableError as exc:
            await asyncio.gather(*(part.fail_in_app(exc) for part in parts))
    outcome = BatchOutcome()
    await asyncio.gather(*(part.conclude() for part in parts))
    for part in parts:
        outcome.add(part.outcome)
    outcome.updates = history.updates
    return outcome


async def send_batch(
    ctx: DeliveryContext,
    claimed: ClaimedBatch,
    *,
    profiles: Mapping[str, UserProfile] | None = None,
) -> BatchOutcome:
    """Send what ``claim_batch`` won."""
    outcome = await send_claimed(
        ctx,
        envelope=claimed.envelope,
        channel=claimed.channel,
        records=claimed.mine,
        attempt=claimed.attempt,
        profiles=profiles,
        history=claimed.history,
    )
    outcome.ignored += claimed.ignored
    return outcome


async def save_outcome(session: AsyncSession, outcome: BatchOutcome) -> None:
    """The outcome's PostgreSQL writes, in the caller's transaction: the push subscriptions,
    device tokens and chats a provider reported gone (disabled with its answer, so later sends
    skip them)."""
    if outcome.expired_endpoints:
        await recipients.disable_web_push(session, reasons=outcome.expired_endpoints)
    if outcome.expired_devices:
        await recipients.disable_addresses(
            session, kind=recipients.AddressKind.MOBILE_PUSH, reasons=outcome.expired_devices
        )
    chats: dict[str, dict[str, str]] = defaultdict(dict)
    for (service, chat_id), reason in outcome.expired_chats.items():
        chats[service][chat_id] = reason
    for service, reasons in chats.items():
        await recipients.disable_addresses(
            session, kind=recipients.AddressKind.CHAT, reasons=reasons, provider=service
        )
    if outcome.used_endpoints:
        await recipients.mark_web_push_used(session, endpoints=outcome.used_endpoints)


async def hand_on(ctx: DeliveryContext, outcome: BatchOutcome) -> None:
    """After ``save_outcome`` committed: enqueue the retries and announce the status changes
    (a delivery announced dead has its dead letter to replay)."""
    for channel, count in Counter(d.channel for d in outcome.dead_letters).items():
        metrics.record_dead_letter(channel, count)
    await asyncio.gather(
        *(
            ctx.queue.enqueue_send(
                task_messages.send(
                    r.envelope, r.channel, r.delivery_ids, attempt=r.attempt, countdown=r.countdown
                )
            )
            for r in outcome.retries
        )
    )
    await announce(ctx, outcome.updates)


@dataclass
class _Resources:
    """Everything a batch needs, fetched once."""

    template: Template | None
    branding: Branding
    users: dict[str, UserProfile | None]
    subscriptions: dict[str, list[PushSubscription]]
    chat_ids: dict[str, str] = field(default_factory=dict)  # chat channels: by user id
    webhook_urls: dict[str, str] = field(default_factory=dict)  # webhook channel: by user id
    devices: dict[str, list[MobileDevice]] = field(default_factory=dict)  # mobile push
    # Email: the users' addresses on the suppression list, with why (normalised address).
    suppressed: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class _Final:
    """A delivery that failed for good, and its last attempt."""

    delivery_id: str
    status: DeliveryStatus
    at: datetime
    reason: str
    attempt: Attempt


@dataclass
class _Batch:
    """One batch's sending: its outcome so far, and the retries and dead letters it collects
    for the end of the batch."""

    ctx: DeliveryContext
    envelope: Envelope
    channel: Channel
    attempt: int
    history: RecordingHistory
    outcome: BatchOutcome = field(default_factory=BatchOutcome)
    retry_ids: list[str] = field(default_factory=list)
    in_app: list[InAppItem] = field(default_factory=list)
    retry_delay: float = 0.0
    # Deliveries that failed for good, moved to failed or dead once their dead letters are
    # committed (``conclude``).
    finals: list[_Final] = field(default_factory=list)

    async def send(
        self, mine: list[DeliveryRecord], profiles: Mapping[str, UserProfile | None] | None
    ) -> None:
        await self.prepare(mine, profiles)
        if self.in_app:
            # In-app items are stored in one transaction for the whole batch.
            try:
                await deliver_in_app(self.ctx, self.history, self.in_app, self.attempt)
            except UnavailableError as exc:
                await self.fail_in_app(exc)
        await self.conclude()

    async def prepare(
        self, mine: list[DeliveryRecord], profiles: Mapping[str, UserProfile | None] | None
    ) -> None:
        """Render and send each record; in-app ones are only collected (``in_app``), for
        the caller to store in one go (``deliver_in_app``)."""
        settings = self.ctx.settings
        self.retry_delay = backoff_seconds(
            self.attempt, base=settings.retry_base_seconds, cap=settings.retry_max_seconds
        )
        try:
            resources = await self._fetch(mine, profiles)
        except UnavailableError as exc:
            # The auth service or the database is down: the whole batch is worth retrying.
            await asyncio.gather(*(self._fail(r, exc, permanent=False) for r in mine))
            return
        content = (
            template_service.template_content(resources.template)
            if resources.template is not None
            else None
        )
        limit = asyncio.Semaphore(SEND_CONCURRENCY)

        async def deliver(record: DeliveryRecord) -> None:
            async with limit:
                await self._deliver(record, resources, content)

        if self.channel is Channel.IN_APP:
            # A known user's in-app delivery is only rendered here (the caller stores the
            # batch's items together) and waits for nothing: one after the other, without a
            # task each (a task per delivery was ~4% of a campaign worker's CPU). Skipping
            # an unknown user writes to the history store: those go concurrently.
            unknown = []
            for record in mine:
                if resources.users.get(record.user_id) is None:
                    unknown.append(record)
                else:
                    await self._deliver(record, resources, content)
            mine = unknown
        await asyncio.gather(*(deliver(r) for r in mine))

    async def fail_in_app(self, error: UnavailableError) -> None:
        """The collected in-app items could not be stored: each back for a retry."""
        await asyncio.gather(
            *(self._fail(item.record, error, permanent=False) for item in self.in_app)
        )

    async def _fetch(
        self, mine: list[DeliveryRecord], profiles: Mapping[str, UserProfile | None] | None
    ) -> _Resources:
        ctx = self.ctx
        async with ctx.sessionmaker() as session:
            tenant_id = self.envelope.tenant_id
            template = await ctx.templates.get(session, self.envelope.template_slug, tenant_id)
            branding = await ctx.tenants.branding(session, tenant_id)
            subscriptions: dict[str, list[PushSubscription]] = defaultdict(list)
            if self.channel is Channel.PUSH:
                rows = await RecipientAddressRepository(session).active(
                    [r.user_id for r in mine], kind=recipients.AddressKind.WEB_PUSH.value
                )
                for row in rows:
                    subscriptions[row.user_id].append(
                        PushSubscription(
                            endpoint=row.key, p256dh=row.value["p256dh"], auth=row.value["auth"]
                        )
                    )
            chat_ids: dict[str, str] = {}
            if self.channel in CHAT_CHANNELS:
                rows = await RecipientAddressRepository(session).active(
                    [r.user_id for r in mine], kind=recipients.AddressKind.CHAT.value
                )
                # The newest address of the channel's service, when a user has several.
                for row in sorted(rows, key=lambda row: row.created_at):
                    if row.provider == self.channel.value:
                        chat_ids[row.user_id] = row.key
            devices: dict[str, list[MobileDevice]] = defaultdict(list)
            if self.channel is Channel.PUSH_MOBILE:
                rows = await RecipientAddressRepository(session).active(
                    [r.user_id for r in mine], kind=recipients.AddressKind.MOBILE_PUSH.value
                )
                for row in rows:
                    devices[row.user_id].append(MobileDevice(row.key, row.provider or ""))
            webhook_urls: dict[str, str] = {}
            if self.channel is Channel.WEBHOOK:
                rows = await RecipientAddressRepository(session).active(
                    [r.user_id for r in mine], kind=recipients.AddressKind.WEBHOOK.value
                )
                for row in sorted(rows, key=lambda row: row.created_at):
                    webhook_urls[row.user_id] = row.key
        given = profiles or {}
        wanted = list({r.user_id for r in mine if r.user_id not in given})
        users: dict[str, UserProfile | None] = {u: given[u] for u in given}
        if wanted:
            users.update(await ctx.users.get_many(wanted))
        suppressed: dict[str, str] = {}
        if self.channel is Channel.EMAIL:
            addresses = [u.email for u in users.values() if u is not None and u.email]
            if addresses:
                async with ctx.sessionmaker() as session:
                    listed = await suppressions.suppressed(session, addresses=addresses)
                suppressed = {a: row.reason for a, row in listed.items()}
        return _Resources(
            template, branding, users, subscriptions, chat_ids, webhook_urls, devices, suppressed
        )

    async def _deliver(
        self, record: DeliveryRecord, resources: _Resources, content: Any | None
    ) -> None:
        user = resources.users.get(record.user_id)
        if user is None:
            await self.history.transition(
                record.id,
                DeliveryStatus.SKIPPED,
                at=datetime.now(UTC),
                expected=frozenset({DeliveryStatus.SENDING}),
                reason="unknown user: the auth service has no such user",
            )
            self.outcome.skipped += 1
            return
        if self.channel is Channel.EMAIL and user.email and resources.suppressed:
            why = resources.suppressed.get(suppressions.normalise_address(user.email))
            if why is not None:
                # Not retried, not failed over: no relay should send to this address.
                await self.history.transition(
                    record.id,
                    DeliveryStatus.SKIPPED,
                    at=datetime.now(UTC),
                    expected=frozenset({DeliveryStatus.SENDING}),
                    reason=f"the address {user.email} is suppressed ({why})",
                )
                self.outcome.skipped += 1
                return
        if content is None:
            missing = HeraldError(f"the template '{self.envelope.template_slug}' no longer exists")
            await self._fail(record, missing, permanent=True)
            return
        try:
            message, stored = self._render(record, user, content, resources)
        except HeraldError as exc:  # a render error, or no content for the channel
            await self._fail(record, exc, permanent=True)
            return
        if self.channel is Channel.IN_APP:
            self.in_app.append(InAppItem(record, message, stored))
            return
        await self._send(record, message, stored)

    def _render(
        self, record: DeliveryRecord, user: UserProfile, content: Any, resources: _Resources
    ) -> tuple[OutgoingMessage, Rendered]:
        envelope, channel = self.envelope, self.channel
        item = template_service.select_content(
            content, channel=channel, locale=envelope.locale or user.locale
        )
        rendered = template_service.render_content(
            item, _render_context(envelope, user, resources.branding)
        )
        html = rendered.html
        if html and channel is Channel.EMAIL:
            # Open and click tracking, as far as the settings turn it on.
            html = tracking.instrument_html(
                self.ctx.settings, html, delivery_id=record.id, critical=envelope.critical
            )
        message = OutgoingMessage(
            delivery_id=record.id,
            event_id=envelope.id,
            event_type=envelope.type,
            channel=channel,
            user=user,
            subject=rendered.subject,
            title=rendered.title,
            body=rendered.body,
            html=html,
            data=envelope.payload or {},
            push_subscriptions=tuple(resources.subscriptions.get(record.user_id, ())),
            chat_id=(
                _payload_chat_id(envelope, channel) or resources.chat_ids.get(record.user_id)
                if channel in CHAT_CHANNELS
                else None
            ),
            blocks=rendered.blocks,
            webhook_url=resources.webhook_urls.get(record.user_id),
            devices=tuple(resources.devices.get(record.user_id, ())),
            push_data=rendered.data or {},
            badge=rendered.badge,
            sound=rendered.sound,
            actions=tuple(rendered.actions or ()),
            tenant_id=envelope.tenant_id,
            unsubscribe=(
                unsubscribe.links_for(self.ctx.settings, user_id=user.id, event_type=envelope.type)
                if channel is Channel.EMAIL and not envelope.critical
                else None
            ),
        )
        stored = Rendered(
            subject=rendered.subject,
            title=rendered.title,
            body=rendered.body if channel is Channel.IN_APP else None,
            locale=rendered.locale,
        )
        return message, stored

    async def _send(
        self, record: DeliveryRecord, message: OutgoingMessage, stored: Rendered
    ) -> None:
        channel, event_id = self.channel, self.envelope.id
        started = time.perf_counter()
        try:
            with (
                log_context(delivery_id=record.id, event_id=event_id),
                tracing.span(f"send {channel.value}", delivery_id=record.id, event_id=event_id),
            ):
                result = await self.ctx.senders[channel].send(message)
        except (TransientChannelError, PermanentChannelError) as exc:
            # Push errors still name the subscriptions the push service reported gone.
            self._expired(
                getattr(exc, "expired_endpoints", ()), getattr(exc, "expired_reasons", {})
            )
            await self._record_provider_tries(record.id, exc.tries)
            await self._fail(record, exc, permanent=isinstance(exc, PermanentChannelError))
            return
        metrics.observe_send_latency(channel.value, time.perf_counter() - started)
        await self._record_provider_tries(record.id, result.failed_tries)
        self._expired(result.expired_endpoints, result.expired_reasons)
        self.outcome.used_endpoints.extend(
            s.endpoint
            for s in message.push_subscriptions
            if s.endpoint not in result.expired_reasons
        )
        await self.history.transition(
            record.id,
            # Where the provider answered with the posted message, it got there: delivered.
            DeliveryStatus.DELIVERED if result.delivered else DeliveryStatus.SENT,
            at=datetime.now(UTC),
            expected=frozenset({DeliveryStatus.SENDING}),
            rendered=stored,
            provider_message_id=result.provider_message_id,
            attempt=Attempt(number=self.attempt, at=datetime.now(UTC), provider=result.provider),
        )
        self.outcome.sent += 1

    def _expired(self, endpoints: Sequence[str], reasons: Mapping[str, str]) -> None:
        if self.channel in CHAT_CHANNELS:
            for chat_id in endpoints:
                self.outcome.expired_chats[(self.channel.value, chat_id)] = reasons.get(
                    chat_id, f"{self.channel.value} reported the chat gone"
                )
            return
        gone = (
            self.outcome.expired_devices
            if self.channel is Channel.PUSH_MOBILE
            else self.outcome.expired_endpoints
        )
        for endpoint in endpoints:
            gone[endpoint] = reasons.get(
                endpoint, "the push service reported the subscription gone"
            )

    async def _record_provider_tries(self, delivery_id: str, tries: Sequence[ProviderTry]) -> None:
        """Providers that failed this attempt before the next one was tried (failover): one
        attempt entry each, the delivery staying in ``sending``. Not announced: still sending."""
        for number, tried in enumerate(tries):
            following = tries[number + 1].provider if number + 1 < len(tries) else "the next"
            await self.history.transition(
                delivery_id,
                DeliveryStatus.SENDING,
                at=tried.at,
                announced=False,
                expected=frozenset({DeliveryStatus.SENDING}),
                reason=f"{tried.provider} failed ({tried.error}); trying {following} provider",
                attempt=Attempt(
                    number=self.attempt, at=tried.at, provider=tried.provider, error=tried.error
                ),
            )

    async def _fail(self, record: DeliveryRecord, error: HeraldError, *, permanent: bool) -> None:
        """Back to ``queued`` for a retry while attempts remain; else failed (permanent) or
        dead, with a dead letter."""
        attempt = self.attempt
        at = datetime.now(UTC)
        provider = getattr(error, "provider", None)
        record_attempt = Attempt(number=attempt, at=at, provider=provider, error=error.message)
        retry_after = getattr(error, "retry_after", None)
        if retry_after is not None:
            # The provider asked to wait (429 Retry-After): the batch's retry waits that long.
            self.retry_delay = max(
                self.retry_delay, min(float(retry_after), self.ctx.settings.retry_max_seconds)
            )
        if not permanent and attempt < self.ctx.settings.delivery_max_attempts:
            await self.history.transition(
                record.id,
                DeliveryStatus.QUEUED,
                at=at,
                expected=frozenset({DeliveryStatus.SENDING}),
                reason=(
                    f"attempt {attempt} failed ({error.message}); "
                    f"retrying in {self.retry_delay:.0f} s"
                ),
                attempt=record_attempt,
            )
            self.retry_ids.append(record.id)
            self.outcome.retried += 1
            metrics.record_retry(self.channel.value)
            return
        status = DeliveryStatus.FAILED if permanent else DeliveryStatus.DEAD
        reason = (
            error.message if permanent else f"gave up after {attempt} attempts: {error.message}"
        )
        self.finals.append(_Final(record.id, status, at, reason, record_attempt))
        self.outcome.dead_letters.append(
            DeadLetter(
                delivery_id=record.id,
                event_id=self.envelope.id,
                event_type=self.envelope.type,
                user_id=record.user_id,
                channel=self.channel.value,
                envelope=self.envelope.to_wire(),
                error=reason,
                attempts=attempt,
            )
        )
        if permanent:
            self.outcome.failed += 1
        else:
            self.outcome.dead += 1

    async def conclude(self) -> None:
        """End the batch: the dead letters of the deliveries that failed for good committed
        first, then those deliveries moved to failed or dead, so that a delivery the history
        shows failed for good always has its dead letter to replay. A process that dies in
        between leaves them ``sending``: the redelivered task tries them once more, and a
        replay meanwhile leaves their dead letters alone (``retry_dead_letters``). Then the
        retries, for after the caller's commit."""
        if self.finals:
            async with self.ctx.sessionmaker() as session, session.begin():
                await DeadLetterRepository(session).add(self.outcome.dead_letters)
            await asyncio.gather(
                *(
                    self.history.transition(
                        final.delivery_id,
                        final.status,
                        at=final.at,
                        expected=frozenset({DeliveryStatus.SENDING}),
                        reason=final.reason,
                        attempt=final.attempt,
                    )
                    for final in self.finals
                )
            )
        self.finish()

    def finish(self) -> None:
        """The batch's retries, for after the caller's commit (``conclude``)."""
        if self.retry_ids:
            self.outcome.retries.append(
                Retry(
                    self.envelope,
                    self.channel,
                    self.retry_ids,
                    attempt=self.attempt + 1,
                    countdown=self.retry_delay,
                )
            )


def _payload_chat_id(envelope: Envelope, channel: Channel) -> str | None:
    """The chat the event names for ``channel`` (``payload.chat.slack``...), before the
    recipient's own chat address."""
    chat = (envelope.payload or {}).get("chat")
    value = chat.get(channel.value) if isinstance(chat, dict) else None
    if isinstance(value, str | int) and not isinstance(value, bool) and str(value).strip():
        return str(value).strip()
    return None


def _render_context(envelope: Envelope, user: UserProfile, branding: Branding) -> dict[str, Any]:
    return {
        "user": user.to_context(),
        "payload": envelope.payload or {},
        "event": {"id": envelope.id, "type": envelope.type, "created_at": envelope.created_at},
        "tenant": branding.to_context(),
    }
