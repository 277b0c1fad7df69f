"""Resolvers for events, event types, deliveries, dead letters, preferences and push."""

from __future__ import annotations

from datetime import time
from typing import Any

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession

from backend.auth import MANAGE_TEMPLATES, SEND_EVENTS, Principal, Role
from backend.channels import Channel
from backend.config import Environment
from backend.db.history.base import DeliveryFilter as HistoryFilter
from backend.db.history.base import HistoryStore, history_cursor
from backend.errors import HeraldError, ValidationError
from backend.observability import metrics
from backend.resolvers.units import mutate, read
from backend.schema.common import PageInfo
from backend.schema.context import Context
from backend.schema.errors import error_type_for
from backend.schema.events import (
    DeadLetter,
    DeadLetterConnection,
    DeadLetterEdge,
    DeadLettersRetried,
    Delivery,
    DeliveryBudget,
    DeliveryBudgetInput,
    DeliveryBudgetRemoved,
    DeliveryBudgetResult,
    DeliveryConnection,
    DeliveryEdge,
    DeliveryFilter,
    DigestCadence,
    Event,
    EventAccepted,
    EventBatch,
    EventInput,
    EventType,
    EventTypeResult,
    Preferences,
    PreferencesInput,
    PreferencesResult,
    PushSubscriptionInput,
    PushSubscriptionResult,
    PushSubscriptionSaved,
    QuietHours,
    QuietHoursInput,
    RegisterEventTypeInput,
    RemoveDeliveryBudgetResult,
    RetryDeadLettersResult,
    SendEventResult,
    SendEventsResult,
)
from backend.services import dead_letters as dead_letter_service
from backend.services import event_types as event_type_service
from backend.services import events as event_service
from backend.services import limits as limit_service
from backend.services import preferences as preference_service
from backend.services.deliveries import DeliveryQueue
from backend.services.pagination import check_page_size

Info = strawberry.Info[Context, Any]
ADMINS = frozenset({Role.ADMIN})


def _history(info: Info) -> HistoryStore:
    history: HistoryStore = info.context.services.extras["history"]
    return history


def _event_data(item: EventInput) -> event_service.EventData:
    return event_service.EventData(
        type=item.type,
        user_ids=[str(u) for u in item.user_ids],
        payload=item.payload,
        idempotency_key=item.idempotency_key,
        template_slug=item.template_slug,
        channels=item.channels,
        send_at=item.send_at,
        locale=item.locale,
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


async def send_event(info: Info, input: EventInput) -> SendEventResult:
    ingestion = info.context.services.extras["ingestion"]
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

    return await mutate(info, SEND_EVENTS, work)  # type: ignore[return-value]


async def send_events(info: Info, inputs: list[EventInput]) -> SendEventsResult:
    ingestion = info.context.services.extras["ingestion"]
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

    return await mutate(info, SEND_EVENTS, work)  # type: ignore[return-value]


async def register_event_type(info: Info, input: RegisterEventTypeInput) -> EventTypeResult:
    data = event_type_service.EventTypeData(
        name=input.name,
        description=input.description,
        payload_schema=input.payload_schema,  # type: ignore[arg-type]
        template_slug=input.template_slug,
        channels=input.channels,
        critical=input.critical,
        throttle=(input.throttle.limit, input.throttle.window_seconds) if input.throttle else None,
        digest={
            "every_seconds": input.digest.every_seconds,
            "cron": input.digest.cron,
            "key": input.digest.key,
            "template_slug": input.digest.template_slug,
        }
        if input.digest
        else None,
    )

    async def work(session: AsyncSession, actor: Principal) -> EventType:
        row = await event_type_service.register_event_type(session, actor=actor, data=data)
        info.context.services.extras["ingestion"].rules.invalidate()
        return EventType.from_model(row)

    return await mutate(info, MANAGE_TEMPLATES, work)  # type: ignore[return-value]


async def event_types(info: Info) -> list[EventType]:
    async def work(session: AsyncSession, _: Principal) -> list[EventType]:
        return [EventType.from_model(r) for r in await event_type_service.list_event_types(session)]

    return await read(info, MANAGE_TEMPLATES | {Role.SERVICE}, work)


def _filter(f: DeliveryFilter | None) -> HistoryFilter:
    if f is None:
        return HistoryFilter()
    return HistoryFilter(
        user_id=str(f.user_id) if f.user_id else None,
        event_id=str(f.event_id) if f.event_id else None,
        campaign_id=str(f.campaign_id) if f.campaign_id else None,
        channel=f.channel,
        status=f.status,
        since=f.from_,
        until=f.to,
    )


async def deliveries(
    info: Info, filter: DeliveryFilter | None = None, first: int = 20, after: str | None = None
) -> DeliveryConnection:
    history = _history(info)

    async def work(_: AsyncSession, __: Principal) -> DeliveryConnection:
        page = await history.find(_filter(filter), first=check_page_size(first), after=after)
        edges = [
            DeliveryEdge(cursor=history_cursor(record), node=Delivery.from_record(record))
            for record in page.items
        ]
        return DeliveryConnection(
            edges=edges,
            page_info=PageInfo(has_next_page=page.has_next_page, end_cursor=page.end_cursor),
        )

    return await read(info, MANAGE_TEMPLATES, work)


async def event(info: Info, id: strawberry.ID) -> Event | None:
    history = _history(info)

    async def work(_: AsyncSession, __: Principal) -> Event | None:
        if not event_service.is_event_id(str(id)):
            return None
        page = await history.find(HistoryFilter(event_id=str(id)), first=100)
        records = page.items
        return Event(
            id=id,
            type=records[0].event_type if records else None,
            deliveries=[Delivery.from_record(r) for r in records],
        )

    return await read(info, MANAGE_TEMPLATES, work)


async def dead_letters(
    info: Info, first: int = 20, after: str | None = None
) -> DeadLetterConnection:
    async def work(session: AsyncSession, _: Principal) -> DeadLetterConnection:
        page = await dead_letter_service.list_dead_letters(session, first=first, after=after)
        return DeadLetterConnection(
            edges=[DeadLetterEdge(cursor=c, node=DeadLetter.from_model(r)) for c, r in page.items],
            page_info=PageInfo(has_next_page=page.has_next_page, end_cursor=page.end_cursor),
        )

    return await read(info, ADMINS, work)


async def retry_dead_letters(info: Info, ids: list[strawberry.ID]) -> RetryDeadLettersResult:
    history = _history(info)
    queue: DeliveryQueue = info.context.services.extras["queue"]

    async def work(session: AsyncSession, actor: Principal) -> DeadLettersRetried:
        retried, missing = await dead_letter_service.retry_dead_letters(
            session, actor=actor, history=history, queue=queue, delivery_ids=[str(i) for i in ids]
        )
        return DeadLettersRetried(
            retried=[strawberry.ID(i) for i in retried],
            not_found=[strawberry.ID(i) for i in missing],
        )

    return await mutate(info, ADMINS, work)  # type: ignore[return-value]


def _preferences(p: preference_service.Preferences) -> Preferences:
    quiet = p.quiet_hours
    return Preferences(
        user_id=strawberry.ID(p.user_id),
        disabled_channels=p.disabled_channels,
        disabled_event_types=p.disabled_event_types,
        quiet_hours=QuietHours(start=quiet.start.strftime("%H:%M"), end=quiet.end.strftime("%H:%M"))
        if quiet
        else None,
        timezone=p.timezone,
        digest_cadence=[
            DigestCadence(event_type=t, cadence=c) for t, c in sorted(p.digest_cadence.items())
        ],
    )


def _clock(value: str, field: str) -> time:
    try:
        return time.fromisoformat(value)
    except ValueError as exc:
        raise ValidationError(f"'{value}' is not a time of day (HH:MM)", field=field) from exc


def _quiet_hours(
    value: QuietHoursInput | None,
) -> preference_service.QuietHours | preference_service.Keep | None:
    if value is strawberry.UNSET:
        return preference_service.KEEP
    if value is None:
        return None
    return preference_service.QuietHours(
        _clock(value.start, "quietHours.start"), _clock(value.end, "quietHours.end")
    )


async def preferences(info: Info, user_id: strawberry.ID | None = None) -> Preferences:
    async def work(session: AsyncSession, actor: Principal) -> Preferences:
        result = await preference_service.get_preferences(
            session, actor=actor, user_id=str(user_id) if user_id else None
        )
        return _preferences(result)

    return await read(info, None, work)


async def set_preferences(info: Info, input: PreferencesInput) -> PreferencesResult:
    async def work(session: AsyncSession, actor: Principal) -> Preferences:
        result = await preference_service.set_preferences(
            session,
            actor=actor,
            user_id=str(input.user_id) if input.user_id else None,
            disabled_channels=[Channel(c) for c in input.disabled_channels],
            disabled_event_types=input.disabled_event_types,
            quiet_hours=_quiet_hours(input.quiet_hours),
            timezone=preference_service.KEEP
            if input.timezone is strawberry.UNSET
            else input.timezone,
            digest_cadence=preference_service.KEEP
            if input.digest_cadence is strawberry.UNSET
            else {d.event_type: d.cadence for d in input.digest_cadence or []},
        )
        return _preferences(result)

    return await mutate(info, None, work)  # type: ignore[return-value]


async def register_push_subscription(
    info: Info, input: PushSubscriptionInput
) -> PushSubscriptionResult:
    allow_http = info.context.settings.environment is not Environment.PRODUCTION

    async def work(session: AsyncSession, actor: Principal) -> PushSubscriptionSaved:
        await preference_service.register_push_subscription(
            session,
            actor=actor,
            endpoint=input.endpoint,
            p256dh=input.keys.p256dh,
            auth=input.keys.auth,
            allow_http=allow_http,
        )
        return PushSubscriptionSaved(endpoint=input.endpoint)

    return await mutate(info, None, work)  # type: ignore[return-value]


def _budget(row: Any) -> DeliveryBudget:
    return DeliveryBudget(
        channel=Channel(row.channel),
        max_deliveries=row.max_deliveries,
        window_seconds=row.window_seconds,
        updated_by=row.updated_by,
        updated_at=row.updated_at,
    )


async def delivery_budgets(info: Info) -> list[DeliveryBudget]:
    async def work(session: AsyncSession, _: Principal) -> list[DeliveryBudget]:
        return [_budget(r) for r in await limit_service.list_budgets(session)]

    return await read(info, MANAGE_TEMPLATES, work)


async def set_delivery_budget(info: Info, input: DeliveryBudgetInput) -> DeliveryBudgetResult:
    async def work(session: AsyncSession, actor: Principal) -> DeliveryBudget:
        row = await limit_service.set_budget(
            session,
            actor=actor,
            channel=input.channel,
            max_deliveries=input.max_deliveries,
            window_seconds=input.window_seconds,
        )
        return _budget(row)

    return await mutate(info, ADMINS, work)  # type: ignore[return-value]


async def remove_delivery_budget(info: Info, channel: Channel) -> RemoveDeliveryBudgetResult:
    async def work(session: AsyncSession, _: Principal) -> DeliveryBudgetRemoved:
        removed = await limit_service.remove_budget(session, channel=channel)
        return DeliveryBudgetRemoved(channel=channel, removed=removed)

    return await mutate(info, ADMINS, work)  # type: ignore[return-value]
