"""Resolvers for events, event types, deliveries, dead letters, preferences and push."""

from __future__ import annotations

from typing import Any

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession
from strawberry.tools import create_type

from backend.auth import MANAGE_TEMPLATES, SEND_EVENTS, Principal, Scope
from backend.errors import HeraldError
from backend.observability import metrics
from backend.resolvers.units import mutate, read
from backend.schema.context import Context
from backend.schema.deliveries import Delivery
from backend.schema.errors import error_type_for
from backend.schema.events import (
    Event,
    EventAccepted,
    EventBatch,
    EventInput,
    SendEventResult,
    SendEventsResult,
)
from backend.services import events as event_service

Info = strawberry.Info[Context, Any]


def _event_data(item: EventInput) -> event_service.EventData:
    return event_service.EventData(
        type=item.type,
        user_ids=[str(u) for u in item.user_ids],
        topics=item.topics,
        payload=item.payload,
        idempotency_key=item.idempotency_key,
        template_slug=item.template_slug,
        channels=item.channels,
        send_at=item.send_at,
        locale=item.locale,
        cancel_key=item.cancel_key,
        tenant_id=item.tenant_id,
    )


def _outcome(result: event_service.Accepted) -> str:
    if result.duplicate:
        return "duplicate"
    return "scheduled" if result.scheduled_for else "accepted"


def _accepted(result: event_service.Accepted) -> EventAccepted:
    return EventAccepted(
        event_id=strawberry.ID(result.event_id),
        duplicate=result.duplicate,
        scheduled_for=result.scheduled_for,
    )


@strawberry.mutation(
    description=(
        "Accept one event for delivery. Accepted means RabbitMQ confirmed it (or, with "
        "`sendAt`, it is stored). Services and admins."
    )
)
async def send_event(info: Info, input: EventInput) -> SendEventResult:
    ingestion = info.context.services.clients.ingestion
    data = _event_data(input)

    async def work(session: AsyncSession, actor: Principal) -> EventAccepted:
        try:
            result = await event_service.accept_event(
                session, actor=actor, data=data, ingestion=ingestion
            )
        except HeraldError:
            metrics.record_event_accepted(data.type, "rejected")
            raise
        metrics.record_event_accepted(data.type, _outcome(result))
        return _accepted(result)

    return await mutate(info, SEND_EVENTS, work, scope=Scope.EVENTS_SEND, tenant_scoped=True)  # type: ignore[return-value]


@strawberry.mutation(description="Accept up to 500 events; one result per input, in order.")
async def send_events(info: Info, inputs: list[EventInput]) -> SendEventsResult:
    ingestion = info.context.services.clients.ingestion
    items = [_event_data(i) for i in inputs]

    async def work(session: AsyncSession, actor: Principal) -> EventBatch:
        outcomes = await event_service.accept_events(
            session, actor=actor, items=items, ingestion=ingestion
        )
        for item, o in zip(items, outcomes, strict=True):
            metrics.record_event_accepted(
                item.type, "rejected" if isinstance(o, HeraldError) else _outcome(o)
            )
        results: list[Any] = [
            error_type_for(o) if isinstance(o, HeraldError) else _accepted(o) for o in outcomes
        ]
        accepted = sum(isinstance(r, EventAccepted) for r in results)
        return EventBatch(results=results, accepted=accepted)

    return await mutate(info, SEND_EVENTS, work, scope=Scope.EVENTS_SEND, tenant_scoped=True)  # type: ignore[return-value]


@strawberry.field(
    description=(
        "An event and its deliveries (the first 100); null when `id` is not an event id "
        "(a UUID). Managers only; a caller bound to a tenant sees its tenant's deliveries only."
    )
)
async def event(info: Info, id: strawberry.ID) -> Event | None:
    history = info.context.services.clients.history

    async def work(session: AsyncSession, actor: Principal) -> Event | None:
        records = await event_service.event_deliveries(
            session, history, event_id=str(id), tenant_id=actor.tenant_id
        )
        if records is None:
            return None
        return Event(
            id=id,
            type=records[0].event_type if records else None,
            deliveries=[Delivery.from_record(r) for r in records],
        )

    return await read(info, MANAGE_TEMPLATES, work, tenant_scoped=True)


Query = create_type("Query", [event])
Mutation = create_type("Mutation", [send_event, send_events])
