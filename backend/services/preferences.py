"""Users' notification preferences and their Web Push subscriptions."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from backend.auth import Principal, Role
from backend.channels import Channel
from backend.db.repositories.events import PreferenceRepository, PushSubscriptionRepository
from backend.errors import ForbiddenError, ValidationError

_B64URL = re.compile(r"^[A-Za-z0-9_-]+={0,2}$")


@dataclass(frozen=True, slots=True)
class Preferences:
    user_id: str
    disabled_channels: list[Channel]
    disabled_event_types: list[str]


def _subject(actor: Principal, user_id: str | None) -> str:
    """Whose preferences: one's own, or anyone's for an admin."""
    if user_id is None or user_id == actor.user_id:
        return actor.user_id
    if not actor.has_any({Role.ADMIN}):
        raise ForbiddenError("Only admins manage other users' preferences", field="userId")
    return user_id


async def get_preferences(
    session: AsyncSession, *, actor: Principal, user_id: str | None
) -> Preferences:
    subject = _subject(actor, user_id)
    row = await PreferenceRepository(session).get(subject)
    if row is None:
        return Preferences(subject, [], [])
    return Preferences(
        subject, [Channel(c) for c in row.disabled_channels], list(row.disabled_event_types)
    )


async def set_preferences(
    session: AsyncSession,
    *,
    actor: Principal,
    user_id: str | None,
    disabled_channels: Sequence[Channel],
    disabled_event_types: Sequence[str],
) -> Preferences:
    """Replace a user's opt-outs. Critical event types (password resets) still go out."""
    subject = _subject(actor, user_id)
    if len(disabled_event_types) > 200:
        raise ValidationError("Too many event types", field="disabledEventTypes")
    channels = list(dict.fromkeys(c.value for c in disabled_channels))
    types = list(dict.fromkeys(t.strip() for t in disabled_event_types if t.strip()))
    row = await PreferenceRepository(session).upsert(
        subject, disabled_channels=channels, disabled_event_types=types
    )
    return Preferences(
        subject, [Channel(c) for c in row.disabled_channels], list(row.disabled_event_types)
    )


async def register_push_subscription(
    session: AsyncSession,
    *,
    actor: Principal,
    endpoint: str,
    p256dh: str,
    auth: str,
    allow_http: bool = False,
) -> None:
    """Remember the caller's browser subscription (re-registering moves it to the caller).

    ``allow_http`` admits plain-http endpoints, for local push-service stand-ins outside
    production; real push services are always https."""
    if not endpoint.startswith("https://") and not (allow_http and endpoint.startswith("http://")):
        raise ValidationError("A push endpoint is an https URL", field="endpoint")
    if len(endpoint) > 2000:
        raise ValidationError("The endpoint is too long", field="endpoint")
    for name, value in (("p256dh", p256dh), ("auth", auth)):
        if not _B64URL.match(value) or len(value) > 200:
            raise ValidationError(f"keys.{name} must be base64url", field=f"keys.{name}")
    await PushSubscriptionRepository(session).upsert(
        user_id=actor.user_id, endpoint=endpoint, p256dh=p256dh, auth=auth
    )


async def unregister_push_subscription(
    session: AsyncSession, *, actor: Principal, endpoint: str
) -> bool:
    removed = await PushSubscriptionRepository(session).delete(
        endpoints=[endpoint], user_id=actor.user_id
    )
    return removed > 0
