"""Event type resolvers."""

from __future__ import annotations

from typing import Any

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession
from strawberry.tools import create_type

from backend.auth import MANAGE_TEMPLATES, Principal, Role, Scope
from backend.resolvers.units import mutate, read
from backend.schema.context import Context
from backend.schema.event_types import (
    EventType,
    EventTypeResult,
    RegisterEventTypeInput,
)
from backend.services import event_types as event_type_service

Info = strawberry.Info[Context, Any]


@strawberry.mutation(description="Create or change a custom event type and its rule. Managers.")
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
        info.context.services.clients.ingestion.rules.invalidate()
        return EventType.from_model(row)

    return await mutate(info, MANAGE_TEMPLATES, work)  # type: ignore[return-value]


@strawberry.field(description="Built-in and registered event types. Managers and services.")
async def event_types(info: Info) -> list[EventType]:
    async def work(session: AsyncSession, _: Principal) -> list[EventType]:
        return [EventType.from_model(r) for r in await event_type_service.list_event_types(session)]

    return await read(info, MANAGE_TEMPLATES | {Role.SERVICE}, work, scope=Scope.EVENT_TYPES_READ)


Query = create_type("Query", [event_types])
Mutation = create_type("Mutation", [register_event_type])
