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

import asyncio
import logging
from collections.abc import Mapping, Sequence

import httpx

from backend.channels import Channel
from backend.services import campaigns, deliveries, workflow_runs
from backend.services.users import UserProfile

log = logging.getLogger(__name__)


async def settle(ctx: deliveries.DeliveryContext, outcome: deliveries.BatchOutcome) -> None:
    """The sent batches' writes in one transaction; their retries and status changes are
    handed on only once it committed."""
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
    starts = workflow_runs.starts_runs(
        envelope, part_size=ctx.settings.dispatch_part_size, split=split
    )
    if starts or envelope.cancels:
        started: list[str] = []
        async with ctx.sessionmaker() as session:
            await workflow_runs.cancel_for_event(session, envelope)
            if starts:
                started = await workflow_runs.start_runs(session, envelope)
            await session.commit()
        if starts:
            # A run committed but not handed on (a crash here) is released by the sweep.
            if 0 < len(started) <= ctx.settings.workflow_inline_runs:
                # Few runs: their first steps here, as dispatch sends small events itself.
                await asyncio.gather(*(_advance_inline(ctx, run_id) for run_id in started))
            else:
                await workflow_runs.publish_advances(ctx, started)
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
    one Redis pipeline and one history insert for all of them. On an error, the caller runs
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


async def _advance_inline(ctx: deliveries.DeliveryContext, run_id: str) -> None:
    try:
        await advance_workflow_run(ctx, run_id=run_id, http=None)
    except Exception as exc:
        # The run let go of its lease: the release sweep hands it to a task of its own.
        log.warning("workflow run %s failed in its dispatch; left to the sweep: %s", run_id, exc)


async def advance_workflow_run(
    ctx: deliveries.DeliveryContext, *, run_id: str, http: httpx.AsyncClient | None
) -> workflow_runs.Advanced:
    """Take a workflow run through its steps; each send step is a dispatch of its own (its
    deliveries recorded and committed before they are sent, as any event's)."""

    async def send(envelope: deliveries.Envelope, *, redelivered: bool) -> None:
        await dispatch(ctx, envelope, redelivered=redelivered)

    return await workflow_runs.advance(ctx, run_id=run_id, dispatch=send, http=http)
