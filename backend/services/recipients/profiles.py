"""Recipients' profiles: the store the user directory reads between its Redis cache and the
auth service, reading recipients, and services identifying their own."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from backend.auth import Principal, Role
from backend.db.models import RecipientAddress, RecipientRow
from backend.db.repositories.recipients import (
    PROFILE_FIELDS,
    RecipientAddressRepository,
    RecipientRepository,
)
from backend.errors import ForbiddenError, ValidationError
from backend.services.calendars import check_zone
from backend.services.pagination import Page, check_page_size, decode_cursor, encode_cursor
from backend.services.recipients.addresses import AddressInput, register_for_user
from backend.services.users import UserProfile

log = logging.getLogger(__name__)

READERS = frozenset({Role.ADMIN, Role.MANAGER})
WRITERS = frozenset({Role.ADMIN, Role.SERVICE})
# Rows per statement when profiles are written back: well inside PostgreSQL's parameter limit.
WRITE_CHUNK = 1000
_CURSOR = "recipient"

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_PHONE = re.compile(r"^\+[1-9][0-9]{6,14}$")  # E.164
_LOCALE = re.compile(r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})*$")


# --- the look-up layer between the Redis cache and the auth service ---------------------------


def profile_of(row: Any) -> UserProfile:
    """The profile a stored recipient row holds, as deliveries and dry runs read it."""
    return UserProfile(
        id=row.user_id,
        email=row.email,
        first_name=row.first_name or "",
        last_name=row.last_name or "",
        login=row.login or "",
        phone=row.phone,
        locale=row.locale,
        timezone=row.timezone,
    )


class RecipientStore:
    """Recipients in PostgreSQL as the profile source between the Redis cache and the auth
    service: one query per batch of ids; what is missing or stale goes to the auth service and
    comes back here.

    Writing back is a cache fill that belongs to no caller's transaction (look-ups run outside
    one), so it commits in its own session. A database failure never fails a look-up: the
    auth service is asked instead, and a warning logged.
    """

    def __init__(
        self, sessionmaker: async_sessionmaker[AsyncSession], *, max_age_seconds: int
    ) -> None:
        self._sessionmaker = sessionmaker
        self._max_age = timedelta(seconds=max_age_seconds)

    async def read(
        self, user_ids: Sequence[str]
    ) -> tuple[dict[str, UserProfile], dict[str, UserProfile]]:
        """(fresh profiles, identified profiles to fall back on when the auth service does not
        know the user); ids in neither are missing or stale."""
        try:
            async with self._sessionmaker() as session:
                rows = await RecipientRepository(session).profiles(user_ids)
        except (SQLAlchemyError, OSError) as exc:
            log.warning("recipients unreadable (%s: %s); asking the auth service", type(exc), exc)
            return {}, {}
        oldest = datetime.now(UTC) - self._max_age
        fresh: dict[str, UserProfile] = {}
        identified: dict[str, UserProfile] = {}
        for row in rows:
            if row.refreshed_at is not None and row.refreshed_at > oldest:
                fresh[row.user_id] = profile_of(row)
            elif row.source == "identify":
                identified[row.user_id] = profile_of(row)
        return fresh, identified

    async def write(self, profiles: Mapping[str, UserProfile | None]) -> None:
        """Store the profiles the auth service sent (unknown users are not stored). One that
        is stored already, the same, and refreshed within half the maximum age is not written
        again: it stays fresh for at least that half, and a campaign that lists every user
        does not rewrite every row."""
        known = [profile_row(p) for p in profiles.values() if p is not None]
        if not known:
            return
        now = datetime.now(UTC)
        unchanged_since = now - self._max_age / 2
        try:
            async with self._sessionmaker() as session:
                repository = RecipientRepository(session)
                for start in range(0, len(known), WRITE_CHUNK):
                    await repository.store_profiles(
                        known[start : start + WRITE_CHUNK],
                        source="auth",
                        refreshed_at=now,
                        unchanged_since=unchanged_since,
                    )
                await session.commit()
        except (SQLAlchemyError, OSError) as exc:
            log.warning("recipients not stored (%s: %s)", type(exc).__name__, exc)


def profile_row(profile: UserProfile) -> dict[str, Any]:
    """A profile as the recipient row that stores it."""
    return {"user_id": profile.id, **{name: getattr(profile, name) for name in PROFILE_FIELDS}}


# --- reading ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RecipientView:
    """A recipient and all its addresses."""

    row: RecipientRow
    addresses: list[RecipientAddress] = field(default_factory=list)


async def get_recipient(
    session: AsyncSession, *, actor: Principal, user_id: str
) -> RecipientView | None:
    """One recipient: admins and managers read anyone's, a user their own."""
    if user_id != actor.user_id and actor.tenant_id is not None:
        # User ids are the install's, not a tenant's: a bound caller keeps to its own.
        raise ForbiddenError("A caller bound to a tenant reads only its own recipient")
    if user_id != actor.user_id and not actor.has_any(READERS):
        raise ForbiddenError("Only admins and managers read other users' recipients")
    row = await RecipientRepository(session).get(user_id)
    if row is None:
        return None
    addresses = await RecipientAddressRepository(session).of_users([user_id])
    return RecipientView(row, addresses)


async def list_recipients(
    session: AsyncSession, *, search: str | None, first: int, after: str | None
) -> Page[RecipientView]:
    """Recipients by user id; ``search`` matches the id, the email or the name."""
    limit = check_page_size(first)
    if search is not None and len(search) > 200:
        raise ValidationError("The search is too long", field="search")
    rows = await RecipientRepository(session).page(
        search=(search or "").strip() or None,
        after_user_id=decode_cursor(_CURSOR, after),
        limit=limit + 1,
    )
    shown = rows[:limit]
    by_user: dict[str, list[RecipientAddress]] = {r.user_id: [] for r in shown}
    for address in await RecipientAddressRepository(session).of_users(list(by_user)):
        by_user[address.user_id].append(address)
    return Page(
        items=[
            (encode_cursor(_CURSOR, r.user_id), RecipientView(r, by_user[r.user_id])) for r in shown
        ],
        has_next_page=len(rows) > limit,
    )


# --- writing ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProfileInput:
    """identifyRecipient's profile fields: only those given (not ``None``) change."""

    email: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    phone: str | None = None
    locale: str | None = None
    timezone: str | None = None
    custom: dict[str, Any] | None = None


def _checked_fields(profile: ProfileInput) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    if profile.email is not None:
        if len(profile.email) > 320 or not _EMAIL.match(profile.email):
            raise ValidationError("Not an email address", field="email")
        fields["email"] = profile.email
    for name, label in (("first_name", "firstName"), ("last_name", "lastName")):
        value = getattr(profile, name)
        if value is not None:
            if len(value) > 200:
                raise ValidationError("A name is at most 200 characters", field=label)
            fields[name] = value
    if profile.phone is not None:
        if not _PHONE.match(profile.phone):
            raise ValidationError("A phone number is in E.164 form (+4915112345678)", field="phone")
        fields["phone"] = profile.phone
    if profile.locale is not None:
        if len(profile.locale) > 35 or not _LOCALE.match(profile.locale):
            raise ValidationError("A locale is a language tag such as de-DE", field="locale")
        fields["locale"] = profile.locale
    if profile.timezone is not None:
        check_zone(profile.timezone, field="timezone")
        fields["timezone"] = profile.timezone
    if profile.custom is not None and len(str(profile.custom)) > 16_000:
        raise ValidationError("Custom data is at most 16 KB", field="custom")
    return fields


def _checked_user_id(user_id: str) -> str:
    user_id = user_id.strip()
    if not user_id or len(user_id) > 200:
        raise ValidationError("A user id is 1 to 200 characters", field="userId")
    return user_id


async def identify_recipient(
    session: AsyncSession,
    *,
    user_id: str,
    profile: ProfileInput,
    addresses: Sequence[AddressInput] = (),
) -> RecipientView:
    """Create or update a recipient from a service: the given fields change, others stay.

    A recipient the auth service does not know keeps what was identified; one it knows is
    overwritten by the auth service's profile at its next refresh."""
    user_id = _checked_user_id(user_id)
    fields = _checked_fields(profile)
    row = await RecipientRepository(session).identify(
        user_id, fields=fields, custom=profile.custom, refreshed_at=datetime.now(UTC)
    )
    repository = RecipientAddressRepository(session)
    for address in addresses:
        await register_for_user(repository, user_id, address)
    return RecipientView(row, await repository.of_users([user_id]))
