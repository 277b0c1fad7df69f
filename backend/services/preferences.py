"""Users' notification preferences and their Web Push subscriptions."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from enum import Enum
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy.ext.asyncio import AsyncSession

from backend.auth import Principal, Role
from backend.channels import Channel
from backend.db.models import UserPreferences
from backend.db.repositories.preferences import PreferenceRepository
from backend.errors import ForbiddenError, ValidationError
from backend.services import recipients, tenants
from backend.services.calendars import check_zone
from backend.services.digests import CADENCES


class Keep(Enum):
    """Leave this preference as it is."""

    KEEP = "keep"


KEEP = Keep.KEEP


@dataclass(frozen=True, slots=True)
class QuietHours:
    """A daily window, in the user's time zone, when only critical messages go out at once;
    the rest wait until it ends. ``start`` after ``end`` spans midnight (22:00-07:00)."""

    start: time
    end: time

    def contains(self, moment: time) -> bool:
        if self.start < self.end:
            return self.start <= moment < self.end
        return moment >= self.start or moment < self.end

    def ends_after(self, local_now: datetime) -> datetime:
        """When the window that ``local_now`` (aware, in the user's zone) falls in ends."""
        end = datetime.combine(local_now.date(), self.end, tzinfo=local_now.tzinfo)
        if end <= local_now:
            end = datetime.combine(
                local_now.date() + timedelta(days=1), self.end, tzinfo=local_now.tzinfo
            )
        return end


@dataclass(frozen=True, slots=True)
class Preferences:
    user_id: str
    disabled_channels: list[Channel]
    disabled_event_types: list[str]
    quiet_hours: QuietHours | None = None
    timezone: str | None = None
    digest_cadence: dict[str, str] = field(default_factory=dict)
    disabled_topics: list[str] = field(default_factory=list)
    # None: the user's own preferences (everywhere). A tenant: the opt-outs the user made
    # within it, which its events honour on top of the user's own; quiet hours, time zone and
    # digest cadence are always the user's own.
    tenant_id: str | None = None


def quiet_hours_of(row: UserPreferences | None) -> QuietHours | None:
    if row is None or row.quiet_start is None or row.quiet_end is None:
        return None
    return QuietHours(row.quiet_start, row.quiet_end)


def held_until(row: UserPreferences | None, now: datetime) -> datetime | None:
    """When a non-critical delivery to this user may go, if quiet hours hold it now."""
    quiet = quiet_hours_of(row)
    if quiet is None or row is None:
        return None
    try:
        zone = ZoneInfo(row.timezone or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        zone = ZoneInfo("UTC")
    local = now.astimezone(zone)
    if not quiet.contains(local.time().replace(tzinfo=None)):
        return None
    return quiet.ends_after(local).astimezone(UTC)


def _preferences(
    subject: str,
    row: UserPreferences | None,
    *,
    tenant_id: str | None = None,
    layer: UserPreferences | None = None,
) -> Preferences:
    """``row``: the user's own; with ``tenant_id``, ``layer`` holds the opt-outs."""
    opt_outs = row if tenant_id is None else layer
    return Preferences(
        subject,
        [Channel(c) for c in opt_outs.disabled_channels] if opt_outs else [],
        list(opt_outs.disabled_event_types) if opt_outs else [],
        quiet_hours_of(row),
        row.timezone if row else None,
        dict(row.digest_cadence or {}) if row else {},
        list(opt_outs.disabled_topics or []) if opt_outs else [],
        tenant_id,
    )


async def _read(session: AsyncSession, subject: str, tenant_id: str | None) -> Preferences:
    repository = PreferenceRepository(session)
    own = await repository.get(subject)
    layer = await repository.get(subject, tenant_id) if tenant_id is not None else None
    return _preferences(subject, own, tenant_id=tenant_id, layer=layer)


# Who may see (admins and managers: the admin page's Recipients screen) and change (admins)
# someone else's preferences.
READ_OTHERS = frozenset({Role.ADMIN, Role.MANAGER})
CHANGE_OTHERS = frozenset({Role.ADMIN})


def _subject(actor: Principal, user_id: str | None, roles: frozenset[Role] = CHANGE_OTHERS) -> str:
    """Whose preferences: one's own, or anyone's for a caller holding one of ``roles``."""
    if user_id is None or user_id == actor.user_id:
        return actor.user_id
    if actor.tenant_id is not None:
        # User ids are the install's, not a tenant's: a bound caller keeps to its own.
        raise ForbiddenError(
            "A caller bound to a tenant sees only its own preferences", field="userId"
        )
    if not actor.has_any(roles):
        who = "admins and managers see" if roles == READ_OTHERS else "admins manage"
        raise ForbiddenError(f"Only {who} other users' preferences", field="userId")
    return user_id


async def get_preferences(
    session: AsyncSession, *, actor: Principal, user_id: str | None, tenant_id: str | None = None
) -> Preferences:
    """A user's own preferences, or (``tenant_id``, or the tenant a caller is bound to) the
    opt-outs they made within a tenant."""
    subject = _subject(actor, user_id, READ_OTHERS)
    return await _read(session, subject, tenants.named_tenant(actor, tenant_id))


async def set_preferences(
    session: AsyncSession,
    *,
    actor: Principal,
    user_id: str | None,
    disabled_channels: Sequence[Channel],
    disabled_event_types: Sequence[str],
    quiet_hours: QuietHours | Keep | None = KEEP,
    timezone: str | Keep | None = KEEP,
    digest_cadence: dict[str, str] | Keep = KEEP,
    disabled_topics: Sequence[str] | Keep = KEEP,
    tenant_id: str | None = None,
) -> Preferences:
    """Replace a user's opt-outs; change quiet hours, time zone and topic opt-outs when given
    (None clears them). Critical event types (password resets) ignore all of these; topic
    opt-outs apply to deliveries that reached the user through those topics only.

    With ``tenant_id`` (or from a caller bound to a tenant), the opt-outs are those the user
    makes within that tenant: its events honour them on top of the user's own, other tenants'
    events do not. Quiet hours, time zone and digest cadence are the user's own either way."""
    subject = _subject(actor, user_id)
    tenant = await tenants.tenant_for_write(session, actor=actor, requested=tenant_id)
    if len(disabled_event_types) > 200:
        raise ValidationError("Too many event types", field="disabledEventTypes")
    if isinstance(quiet_hours, QuietHours) and quiet_hours.start == quiet_hours.end:
        raise ValidationError("Quiet hours start and end at different times", field="quietHours")
    if isinstance(timezone, str):
        check_zone(timezone, field="timezone")
    channels = list(dict.fromkeys(c.value for c in disabled_channels))
    types = list(dict.fromkeys(t.strip() for t in disabled_event_types if t.strip()))
    extra: dict[str, object] = {}
    if not isinstance(quiet_hours, Keep):
        extra["quiet_start"] = quiet_hours.start if quiet_hours else None
        extra["quiet_end"] = quiet_hours.end if quiet_hours else None
    if not isinstance(timezone, Keep):
        extra["timezone"] = timezone
    if not isinstance(digest_cadence, Keep):
        bad = [c for c in digest_cadence.values() if c not in CADENCES]
        if bad or len(digest_cadence) > 200:
            raise ValidationError(
                f"A digest cadence is one of {', '.join(CADENCES)}", field="digestCadence"
            )
        extra["digest_cadence"] = dict(digest_cadence)
    if not isinstance(disabled_topics, Keep):
        if len(disabled_topics) > 200:
            raise ValidationError("Too many topics", field="disabledTopics")
        extra["disabled_topics"] = list(
            dict.fromkeys(t.strip() for t in disabled_topics if t.strip())
        )
    repository = PreferenceRepository(session)
    if tenant is None:
        row = await repository.upsert(
            subject, disabled_channels=channels, disabled_event_types=types, **extra
        )
        return _preferences(subject, row)
    topics = extra.pop("disabled_topics", KEEP)
    if extra:  # the user's own settings, kept as they are apart from what was given
        own = await repository.get(subject, for_update=True)
        await repository.upsert(
            subject,
            disabled_channels=list(own.disabled_channels) if own else [],
            disabled_event_types=list(own.disabled_event_types) if own else [],
            **extra,
        )
    layer_topics = {} if isinstance(topics, Keep) else {"disabled_topics": topics}
    await repository.upsert(
        subject,
        tenant,
        disabled_channels=channels,
        disabled_event_types=types,
        **layer_topics,
    )
    return await _read(session, subject, tenant)


async def register_push_subscription(
    session: AsyncSession,
    *,
    actor: Principal,
    endpoint: str,
    p256dh: str,
    auth: str,
    allow_http: bool = False,
) -> None:
    """Remember the caller's browser subscription, a Web Push address of their recipient
    (re-registering moves it to the caller; see ``recipients.register_address``).

    ``allow_http`` admits plain-http endpoints, for local push-service stand-ins outside
    production; real push services are always https."""
    address = recipients.web_push_address(
        endpoint=endpoint, p256dh=p256dh, auth=auth, allow_http=allow_http
    )
    await recipients.register_address(session, actor=actor, address=address)
