"""The units of work the Celery tasks run: each step in a transaction of its own, opened and
committed here, so that no service commits.

The order of the commits is the exactly-once protocol: what a dispatch records (deliveries,
digest items, held users) is committed before anything is sent or announced; a send batch's
claim is durable before any provider is called (``claim_batch`` writes it to the history
store); a batch's outcome (dead letters, push subscriptions gone) is committed before its
retries and status changes are handed on; a campaign page's claim is committed before the
next page is published.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import httpx

from backend.channels import Channel
from backend.services import campaigns, deliveries, workflows
from backend.services.users import UserProfile

log = logging.getLogger(__name__)


async def settle(ctx: deliveries.DeliveryContext, outcome: deliveries.BatchOutcome) -> None:
    """The sent batches' writes in one transaction (none when there are none); their retries
    and status changes are handed on only once it committed."""
    if outcome.writes:
        async with ctx.sessionmaker() as session:
            await deliveries.save_outcome(session, outcome)
            await session.commit()
    await deliveries.hand_on(ctx, outcome)


async def dispatch(
    ctx: deliveries.DeliveryContext,
    envelope: deliveries.Envelope,
    *,
    redelivered: bool = False,
    profiles: Mapping[str, UserProfile] | None = None,
    split: bool = True,
) -> deliveries.DispatchSummary:
    """Expand an event into deliveries and send (in-app) or queue (other channels) them; or,
    for an event type with a workflow, start one run per user and hand the runs on."""
    starts = workflows.starts_runs(envelope, part_size=ctx.settings.dispatch_part_size, split=split)
    if starts or envelope.cancels:
        started: list[str] = []
        async with ctx.sessionmaker() as session:
            await workflows.cancel_for_event(session, envelope)
            if starts:
                started = await workflows.start_runs(session, envelope, redelivered=redelivered)
            await session.commit()
        if starts:
            await _hand_on_runs(ctx, [started], takeover=redelivered)
            return deliveries.DispatchSummary(queued=len(started), skipped=0)
    async with ctx.sessionmaker() as session:
        dispatched = await deliveries.record_dispatch(
            ctx, session, envelope, redelivered=redelivered, split=split
        )
        # Committed before anything is announced or sent: held and digested users are
        # released only by the rows it wrote.
        await session.commit()
    await settle(ctx, await deliveries.send_dispatched(ctx, dispatched, profiles=profiles))
    return dispatched.summary


async def dispatch_together(
    ctx: deliveries.DeliveryContext, envelopes: Sequence[deliveries.Envelope]
) -> None:
    """Dispatch the first deliveries of several events that may go ``together`` as one: their
    records in one transaction, committed before anything is sent, then one inbox statement,
    one Redis publish call and one history insert for all of them. On an error, the caller runs
    each event again alone, as a re-run (``dispatch(redelivered=True)``)."""
    async with ctx.sessionmaker() as session:
        dispatched = await deliveries.record_together(ctx, session, envelopes)
        # Committed before anything is announced or sent, as in ``dispatch``.
        await session.commit()
    await settle(ctx, await deliveries.send_together(ctx, dispatched))


async def send(
    ctx: deliveries.DeliveryContext,
    *,
    envelope: deliveries.Envelope,
    channel: Channel,
    delivery_ids: list[str],
    attempt: int,
    resume: bool,
) -> deliveries.BatchOutcome:
    """Send one channel batch. The claim is its own step, durable in the history store
    before any provider is called: of two tasks holding a delivery only one wins it, and a
    crash after a send leaves it in `sending`, taken over only once its lease runs out."""
    claimed = await deliveries.claim_batch(
        ctx,
        envelope=envelope,
        channel=channel,
        delivery_ids=delivery_ids,
        attempt=attempt,
        resume=resume,
    )
    outcome = await deliveries.send_batch(ctx, claimed)
    await settle(ctx, outcome)
    return outcome


async def fan_out_page(
    ctx: deliveries.DeliveryContext,
    *,
    run_id: str,
    page: int,
    users: campaigns.AudienceSource,
    publisher: campaigns.RunPublisher,
    redelivered: bool = False,
    after: str | None = None,
) -> campaigns.PageOutcome:
    """Claim one page of a campaign run's audience, hand on the next page, then dispatch this
    one (in-app deliveries are written here; other channels are queued for their senders)."""
    async with ctx.sessionmaker() as session:
        claimed = await campaigns.claim_page(
            ctx, session, run_id=run_id, page=page, users=users, after=after
        )
        await session.commit()
    await campaigns.hand_on_page(claimed, publisher)
    summary = deliveries.DispatchSummary(queued=0, skipped=0)
    if claimed.envelope is not None and claimed.chunk is not None and claimed.chunk.user_ids:
        # A page done again may find in-app deliveries a dead worker left in `sending`; they
        # are taken over once their lease runs out.
        summary = await dispatch(
            ctx,
            claimed.envelope,
            redelivered=redelivered or not claimed.fresh,
            profiles=claimed.chunk.profiles,
            split=False,
        )
    return claimed.outcome(summary)


async def start_workflow_runs(
    ctx: deliveries.DeliveryContext, envelopes: Sequence[deliveries.Envelope]
) -> None:
    """Dispatch several events that start workflow runs as one: their runs added in one
    transaction, then taken through their first steps side by side (``advance_workflow_runs``).
    On an error before the runs committed, the caller runs each event again alone, as a
    re-run (``dispatch(redelivered=True)``)."""
    async with ctx.sessionmaker() as session:
        started = [await workflows.start_runs(session, e) for e in envelopes]
        await session.commit()
    await _hand_on_runs(ctx, started, takeover=False)


async def _hand_on_runs(
    ctx: deliveries.DeliveryContext, started: Sequence[Sequence[str]], *, takeover: bool
) -> None:
    """Take the runs events started (committed) through their first steps here, as dispatch
    sends small events itself, for the events that started few; hand the others on in
    batches. A run committed but not handed on (a crash here) is released by the sweep."""
    limit = ctx.settings.workflow_inline_runs
    here = [r for runs in started if 0 < len(runs) <= limit for r in runs]
    later = [r for runs in started if len(runs) > limit for r in runs]
    if later:
        await workflows.publish_advances(ctx, later)
    size = ctx.settings.workflow_advance_batch_size
    for n in range(0, len(here), size):
        batch = here[n : n + size]
        try:
            await advance_workflow_runs(ctx, run_ids=batch, http=None, takeover=takeover)
        except Exception as exc:
            # Handed on: a run not leased yet would otherwise wait for the sweep to take its
            # message as lost. What went on meanwhile (done, waiting, or held) is left alone.
            log.warning("workflow runs failed in their dispatch; handed on: %s", exc)
            try:
                await workflows.publish_advances(ctx, batch)
            except Exception as failed:  # the sweep takes them up
                log.warning("handing on %d workflow runs failed: %s", len(batch), failed)


async def advance_workflow_run(
    ctx: deliveries.DeliveryContext, *, run_id: str, http: httpx.AsyncClient | None
) -> workflows.Advanced:
    """Take a workflow run through its steps (``advance_workflow_runs`` for one)."""
    return (await advance_workflow_runs(ctx, run_ids=[run_id], http=http))[run_id]


async def advance_workflow_runs(
    ctx: deliveries.DeliveryContext,
    *,
    run_ids: Sequence[str],
    http: httpx.AsyncClient | None,
    takeover: bool = False,
) -> dict[str, workflows.Advanced]:
    """Take workflow runs through their steps side by side; each send step is a dispatch of
    its own (its deliveries recorded and committed before they are sent, as any event's), and
    the in-app ones of a round are dispatched together (``dispatch_together``; on an error,
    each again alone, as a re-run)."""

    async def send(envelope: deliveries.Envelope, *, redelivered: bool) -> None:
        await dispatch(ctx, envelope, redelivered=redelivered)

    return await workflows.advance_many(
        ctx,
        run_ids=run_ids,
        dispatch=send,
        together=_SendsTogether(ctx),
        http=http,
        takeover=takeover,
    )


@dataclass(frozen=True, slots=True)
class _SendsTogether:
    """Workflow send steps whose events may go together, dispatched as one
    (``dispatch_together``); on an error, each again alone, as a re-run."""

    ctx: deliveries.DeliveryContext

    def admits(self, envelope: deliveries.Envelope) -> bool:
        return deliveries.together(self.ctx, envelope)

    async def __call__(self, envelopes: Sequence[deliveries.Envelope]) -> None:
        try:
            await dispatch_together(self.ctx, envelopes)
        except Exception as exc:
            log.warning("%d workflow sends failed together; each alone: %s", len(envelopes), exc)
            for envelope in envelopes:
                await dispatch(self.ctx, envelope, redelivered=True)
