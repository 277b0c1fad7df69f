"""Sending: render a batch of one channel's claimed deliveries and hand them to the channel's
sender concurrently; record each outcome, retry what may succeed later, dead-letter the rest.

Two ways in: ``send_batch`` for a batch of delivery ids from a channel task (the records are
read and claimed here), and ``send_claimed`` for records dispatch has just stored already
claimed (nothing to read or claim).
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from backend.channels import Channel
from backend.channels.base import (
    OutgoingMessage,
    PermanentChannelError,
    ProviderTry,
    PushSubscription,
    TransientChannelError,
)
from backend.db.history.base import Attempt, DeliveryRecord, DeliveryStatus, Rendered
from backend.db.models import DeadLetter, Template
from backend.db.repositories.dead_letters import DeadLetterRepository
from backend.db.repositories.preferences import PushSubscriptionRepository
from backend.errors import HeraldError, UnavailableError
from backend.observability import metrics, tracing
from backend.observability.logs import log_context
from backend.services import templates as template_service
from backend.services import unsubscribe
from backend.services.deliveries.claims import claim
from backend.services.deliveries.context import DeliveryContext
from backend.services.deliveries.in_app import InAppItem, deliver_in_app
from backend.services.deliveries.records import RecordingHistory, announce
from backend.services.envelope import Envelope
from backend.services.retries import backoff_seconds
from backend.services.users import UserProfile

SEND_CONCURRENCY = 64


@dataclass
class BatchOutcome:
    sent: int = 0
    skipped: int = 0
    retried: int = 0
    failed: int = 0
    dead: int = 0
    ignored: int = 0  # already handled by another task


async def send_batch(
    ctx: DeliveryContext,
    *,
    envelope: Envelope,
    channel: Channel,
    delivery_ids: Sequence[str],
    attempt: int,
    resume: bool = False,
    profiles: Mapping[str, UserProfile] | None = None,
) -> BatchOutcome:
    """Claim a batch of one channel's deliveries, then render and send them concurrently.

    ``resume`` (a redelivered or resumed task) allows taking over deliveries left in
    ``sending`` by a worker that died mid-batch, once their lease has run out (see
    ``claims.claim``). ``profiles`` are users the caller already has: each spares a look-up.
    """
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
    batch = _Batch(ctx, envelope, channel, attempt, history)
    batch.outcome.ignored = len(delivery_ids) - len(mine)
    if mine:
        await batch.send(mine, profiles)
    return batch.outcome


async def send_claimed(
    ctx: DeliveryContext,
    *,
    envelope: Envelope,
    channel: Channel,
    records: Sequence[DeliveryRecord],
    attempt: int,
    unstored: Collection[str] = (),
    profiles: Mapping[str, UserProfile] | None = None,
) -> BatchOutcome:
    """Render and send records the caller has just stored already claimed (``sending``): they
    are what the store holds and this batch's without a claim. ``unstored``: of those, the ones
    it left to be stored with their outcome (in-app, see ``RecordingHistory``)."""
    history = RecordingHistory(ctx.history, {r.id: r for r in records}, unstored)
    batch = _Batch(ctx, envelope, channel, attempt, history)
    if records:
        await batch.send(list(records), profiles)
    return batch.outcome


@dataclass
class _Resources:
    """Everything a batch needs, fetched once."""

    template: Template | None
    users: dict[str, UserProfile | None]
    subscriptions: dict[str, list[PushSubscription]]


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
    dead_letters: list[DeadLetter] = field(default_factory=list)
    expired: list[str] = field(default_factory=list)  # push endpoints reported gone
    in_app: list[InAppItem] = field(default_factory=list)
    retry_delay: float = 0.0

    async def send(
        self, mine: list[DeliveryRecord], profiles: Mapping[str, UserProfile] | None
    ) -> None:
        settings = self.ctx.settings
        self.retry_delay = backoff_seconds(
            self.attempt, base=settings.retry_base_seconds, cap=settings.retry_max_seconds
        )
        try:
            resources = await self._fetch(mine, profiles)
        except UnavailableError as exc:
            # The auth service or the database is down: the whole batch is worth retrying.
            await asyncio.gather(*(self._fail(r, exc, permanent=False) for r in mine))
            await self._finish()
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

        await asyncio.gather(*(deliver(r) for r in mine))
        if self.in_app:
            # In-app items are stored in one transaction for the whole batch.
            try:
                await deliver_in_app(self.ctx, self.history, self.in_app, self.attempt)
            except UnavailableError as exc:
                await asyncio.gather(
                    *(self._fail(item.record, exc, permanent=False) for item in self.in_app)
                )
        if self.expired:
            await self._forget_subscriptions()
        await self._finish()

    async def _fetch(
        self, mine: list[DeliveryRecord], profiles: Mapping[str, UserProfile] | None
    ) -> _Resources:
        ctx = self.ctx
        async with ctx.sessionmaker() as session:
            template = await ctx.templates.get(session, self.envelope.template_slug)
            subscriptions: dict[str, list[PushSubscription]] = defaultdict(list)
            if self.channel is Channel.PUSH:
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
        return _Resources(template, users, subscriptions)

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
        rendered = template_service.render_content(item, _render_context(envelope, user))
        message = OutgoingMessage(
            delivery_id=record.id,
            event_id=envelope.id,
            event_type=envelope.type,
            channel=channel,
            user=user,
            subject=rendered.subject,
            title=rendered.title,
            body=rendered.body,
            html=rendered.html,
            data=envelope.payload or {},
            push_subscriptions=tuple(resources.subscriptions.get(record.user_id, ())),
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
            self.expired.extend(getattr(exc, "expired_endpoints", ()))
            await self._record_provider_tries(record.id, exc.tries)
            await self._fail(record, exc, permanent=isinstance(exc, PermanentChannelError))
            return
        metrics.observe_send_latency(channel.value, time.perf_counter() - started)
        await self._record_provider_tries(record.id, result.failed_tries)
        self.expired.extend(result.expired_endpoints)
        await self.history.transition(
            record.id,
            DeliveryStatus.SENT,
            at=datetime.now(UTC),
            expected=frozenset({DeliveryStatus.SENDING}),
            rendered=stored,
            provider_message_id=result.provider_message_id,
            attempt=Attempt(number=self.attempt, at=datetime.now(UTC), provider=result.provider),
        )
        self.outcome.sent += 1

    async def _record_provider_tries(self, delivery_id: str, tries: Sequence[ProviderTry]) -> None:
        """Providers that failed this attempt before the next one was tried (failover): one
        attempt entry each, the delivery staying in ``sending``. Not announced: still sending."""
        for number, tried in enumerate(tries):
            following = tries[number + 1].provider if number + 1 < len(tries) else "the next"
            await self.ctx.history.transition(
                delivery_id,
                DeliveryStatus.SENDING,
                at=tried.at,
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
        await self.history.transition(
            record.id,
            status,
            at=at,
            expected=frozenset({DeliveryStatus.SENDING}),
            reason=reason,
            attempt=record_attempt,
        )
        self.dead_letters.append(
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

    async def _forget_subscriptions(self) -> None:
        # Its own short unit of work: the batch's other writes go to the history store, which
        # shares no transaction with PostgreSQL.
        async with self.ctx.sessionmaker() as session:
            await PushSubscriptionRepository(session).delete(endpoints=self.expired)
            await session.commit()

    async def _finish(self) -> None:
        """Record the batch's dead letters, enqueue its retries, announce its status changes."""
        ctx = self.ctx
        if self.dead_letters:
            # Committed before the retries are enqueued and the changes announced: a delivery
            # announced dead has its dead letter to replay.
            async with ctx.sessionmaker() as session:
                await DeadLetterRepository(session).add(self.dead_letters)
                await session.commit()
            metrics.record_dead_letter(self.channel.value, len(self.dead_letters))
        if self.retry_ids:
            await ctx.queue.enqueue_send(
                self.envelope,
                self.channel,
                self.retry_ids,
                attempt=self.attempt + 1,
                countdown=self.retry_delay,
            )
        await announce(ctx, self.history.updates)


def _render_context(envelope: Envelope, user: UserProfile) -> dict[str, Any]:
    return {
        "user": user.to_context(),
        "payload": envelope.payload or {},
        "event": {"id": envelope.id, "type": envelope.type, "created_at": envelope.created_at},
    }
