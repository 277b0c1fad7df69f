"""Preference and push subscription resolvers."""

from __future__ import annotations

from datetime import time
from typing import Any

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession
from strawberry.tools import create_type

from backend.auth import Principal
from backend.channels import Channel
from backend.config import Environment
from backend.errors import ValidationError
from backend.resolvers.units import mutate, read
from backend.schema.context import Context
from backend.schema.preferences import (
    DigestCadence,
    Preferences,
    PreferencesInput,
    PreferencesResult,
    PushSubscriptionInput,
    PushSubscriptionResult,
    PushSubscriptionSaved,
    QuietHours,
    QuietHoursInput,
)
from backend.services import preferences as preference_service

Info = strawberry.Info[Context, Any]


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
        disabled_topics=p.disabled_topics,
        tenant_id=p.tenant_id,
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


@strawberry.field(
    description="Your notification preferences (admins and managers: anyone's, with `userId`); "
    "with `tenantId` (or bound to a tenant), the opt-outs made within that tenant."
)
async def preferences(
    info: Info, user_id: strawberry.ID | None = None, tenant_id: str | None = None
) -> Preferences:
    async def work(session: AsyncSession, actor: Principal) -> Preferences:
        result = await preference_service.get_preferences(
            session, actor=actor, user_id=str(user_id) if user_id else None, tenant_id=tenant_id
        )
        return _preferences(result)

    return await read(info, None, work)


@strawberry.mutation(description="Replace your opt-outs (admins: anyone's, with `userId`).")
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
            disabled_topics=preference_service.KEEP
            if input.disabled_topics is strawberry.UNSET
            else input.disabled_topics or [],
            tenant_id=input.tenant_id,
        )
        return _preferences(result)

    return await mutate(info, None, work)  # type: ignore[return-value]


@strawberry.mutation(description="Register this browser's Web Push subscription for the caller.")
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


Query = create_type("Query", [preferences])
Mutation = create_type("Mutation", [set_preferences, register_push_subscription])
