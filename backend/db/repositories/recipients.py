"""Queries on recipients (what Herald keeps of each user), their addresses and sync jobs."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, literal_column, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from backend.db.models import RecipientAddress, RecipientRow, RecipientSync
from backend.db.repositories.base import Repository, RowRepository

# The profile columns, in the order ``profiles`` returns them.
PROFILE_COLUMNS = (
    RecipientRow.user_id,
    RecipientRow.email,
    RecipientRow.first_name,
    RecipientRow.last_name,
    RecipientRow.login,
    RecipientRow.phone,
    RecipientRow.locale,
    RecipientRow.timezone,
    RecipientRow.source,
    RecipientRow.refreshed_at,
)
# The fields a profile from the auth service or identifyRecipient may set.
PROFILE_FIELDS = ("email", "first_name", "last_name", "login", "phone", "locale", "timezone")

# The name as the trigram index ix_recipients_name_trgm holds it: the separator is a literal,
# not a bound parameter, so the planner matches the index's expression.
FULL_NAME = RecipientRow.first_name.op("||")(literal_column("' '")).op("||")(RecipientRow.last_name)

ACTIVE = "ACTIVE"
DISABLED = "DISABLED"


def _contains(search: str) -> str:
    """An ILIKE pattern matching ``search`` anywhere, its wildcards taken literally."""
    return "%" + search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


_NOT_NULL_TEXT = ("first_name", "last_name", "login")
# One statement for any number of profiles: one array per column (``user_id`` and
# PROFILE_FIELDS, in that order).
_STORE_PROFILES = text(
    """
    INSERT INTO recipients
        (user_id, email, first_name, last_name, login, phone, locale, timezone,
         source, refreshed_at)
    SELECT u.user_id, u.email, u.first_name, u.last_name, u.login, u.phone, u.locale,
           u.timezone, :source, :refreshed_at
    FROM unnest(
        CAST(:user_id AS text[]), CAST(:email AS text[]), CAST(:first_name AS text[]),
        CAST(:last_name AS text[]), CAST(:login AS text[]), CAST(:phone AS text[]),
        CAST(:locale AS text[]), CAST(:timezone AS text[])
    ) AS u (user_id, email, first_name, last_name, login, phone, locale, timezone)
    ON CONFLICT (user_id) DO UPDATE SET
        email = excluded.email, first_name = excluded.first_name,
        last_name = excluded.last_name, login = excluded.login, phone = excluded.phone,
        locale = excluded.locale, timezone = excluded.timezone, source = excluded.source,
        refreshed_at = excluded.refreshed_at, updated_at = now()
    WHERE CAST(:unchanged_since AS timestamptz) IS NULL
        OR recipients.refreshed_at IS NULL
        OR recipients.refreshed_at <= CAST(:unchanged_since AS timestamptz)
        OR (recipients.email, recipients.first_name, recipients.last_name, recipients.login,
            recipients.phone, recipients.locale, recipients.timezone, recipients.source)
           IS DISTINCT FROM
           (excluded.email, excluded.first_name, excluded.last_name, excluded.login,
            excluded.phone, excluded.locale, excluded.timezone, excluded.source)
    """
)


class RecipientRepository(Repository):
    async def get(self, user_id: str) -> RecipientRow | None:
        return await self.session.get(RecipientRow, user_id)

    async def profiles(self, user_ids: Sequence[str]) -> Sequence[Any]:
        """The profile columns (:data:`PROFILE_COLUMNS`) of those users who have a row: one
        query, plain rows (no ORM objects), for the look-ups of every send."""
        if not user_ids:
            return []
        stmt = select(*PROFILE_COLUMNS).where(RecipientRow.user_id.in_(list(user_ids)))
        return (await self.session.execute(stmt)).all()

    async def page(
        self, *, search: str | None, after_user_id: str | None, limit: int
    ) -> list[RecipientRow]:
        """By user id; ``search`` matches the user id, the email or a name, case-insensitively."""
        stmt = select(RecipientRow).order_by(RecipientRow.user_id).limit(limit)
        if after_user_id is not None:
            stmt = stmt.where(RecipientRow.user_id > after_user_id)
        if search:
            pattern = _contains(search)
            stmt = stmt.where(
                or_(
                    RecipientRow.user_id.ilike(pattern, escape="\\"),
                    RecipientRow.email.ilike(pattern, escape="\\"),
                    FULL_NAME.ilike(pattern, escape="\\"),
                )
            )
        return list((await self.session.execute(stmt)).scalars())

    async def store_profiles(
        self,
        profiles: Sequence[Mapping[str, Any]],
        *,
        source: str,
        refreshed_at: datetime,
        unchanged_since: datetime | None = None,
    ) -> None:
        """Insert or overwrite the profile fields of many users at once (``user_id`` plus
        :data:`PROFILE_FIELDS` each); custom data and addresses stay.

        ``unchanged_since``: a stored row with the same fields and source, refreshed after
        that time, is left as it is. Every overwrite is a new row version and an entry in each
        of the table's indexes (three trigram indexes among them), so a campaign listing the
        same users again writes only what changed, or what is getting old.

        One statement whatever the number of profiles: the columns go as arrays through
        ``unnest``, so the statement text is always the same (prepared once per connection)
        and a page of 500 costs a few milliseconds, where a 500-row VALUES list cost ~200 ms
        to build and prepare. An id listed twice keeps its last profile."""
        if not profiles:
            return
        by_id = {p["user_id"]: p for p in profiles}
        columns: dict[str, list[Any]] = {"user_id": list(by_id)}
        for name in PROFILE_FIELDS:
            values = [p.get(name) for p in by_id.values()]
            if name in _NOT_NULL_TEXT:
                values = [v or "" for v in values]
            columns[name] = values
        await self.session.execute(
            _STORE_PROFILES,
            {
                **columns,
                "source": source,
                "refreshed_at": refreshed_at,
                "unchanged_since": unchanged_since,
            },
        )

    async def identify(
        self,
        user_id: str,
        *,
        fields: Mapping[str, Any],
        custom: dict[str, Any] | None,
        refreshed_at: datetime,
    ) -> RecipientRow:
        """Insert the recipient or set the given ``fields`` (and ``custom``, when given) on it."""
        values: dict[str, Any] = {
            "user_id": user_id,
            "source": "identify",
            "refreshed_at": refreshed_at,
            **fields,
        }
        if custom is not None:
            values["custom"] = custom
        stmt = insert(RecipientRow).values(values)
        changes = {name: stmt.excluded[name] for name in values if name != "user_id"}
        upsert = stmt.on_conflict_do_update(
            index_elements=[RecipientRow.user_id], set_={**changes, "updated_at": func.now()}
        ).returning(RecipientRow)
        row = await self.session.execute(upsert, execution_options={"populate_existing": True})
        return row.scalar_one()

    async def ensure(self, user_id: str) -> None:
        """A row for ``user_id`` if it has none: its profile is fetched on first use."""
        stmt = (
            insert(RecipientRow)
            .values(user_id=user_id, source="address")
            .on_conflict_do_nothing(index_elements=[RecipientRow.user_id])
        )
        await self.session.execute(stmt)


class RecipientAddressRepository(Repository):
    async def of_users(self, user_ids: Sequence[str]) -> list[RecipientAddress]:
        """Every address of these users, active or not, oldest first."""
        if not user_ids:
            return []
        stmt = (
            select(RecipientAddress)
            .where(RecipientAddress.user_id.in_(list(user_ids)))
            .order_by(RecipientAddress.created_at, RecipientAddress.id)
        )
        return list((await self.session.execute(stmt)).scalars())

    async def active(self, user_ids: Sequence[str], *, kind: str) -> list[RecipientAddress]:
        """The active addresses of one kind these users have: what a send goes to."""
        if not user_ids:
            return []
        stmt = select(RecipientAddress).where(
            RecipientAddress.user_id.in_(list(user_ids)),
            RecipientAddress.kind == kind,
            RecipientAddress.state == ACTIVE,
        )
        return list((await self.session.execute(stmt)).scalars())

    async def register(
        self, *, user_id: str, kind: str, provider: str | None, key: str, value: dict[str, Any]
    ) -> RecipientAddress:
        """Insert or re-activate the address for ``user_id``. An address belongs to one user:
        the same key registered by someone else before (a shared browser, a device that
        changed hands) leaves them."""
        await self.session.execute(
            delete(RecipientAddress).where(
                RecipientAddress.kind == kind,
                RecipientAddress.key == key,
                RecipientAddress.user_id != user_id,
            )
        )
        stmt = insert(RecipientAddress).values(
            id=uuid.uuid4(), user_id=user_id, kind=kind, provider=provider, key=key, value=value
        )
        upsert = stmt.on_conflict_do_update(
            constraint="uq_recipient_addresses_user_kind_key",
            set_={
                "provider": provider,
                "value": value,
                "state": ACTIVE,
                "disabled_reason": None,
                "disabled_at": None,
            },
        ).returning(RecipientAddress)
        result = await self.session.execute(upsert, execution_options={"populate_existing": True})
        return result.scalar_one()

    async def remove(self, address_id: uuid.UUID, *, user_id: str) -> bool:
        stmt = delete(RecipientAddress).where(
            RecipientAddress.id == address_id, RecipientAddress.user_id == user_id
        )
        result = await self.session.execute(stmt)
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def disable(
        self,
        *,
        kind: str,
        keys: Sequence[str],
        reason: str,
        at: datetime,
        provider: str | None = None,
    ) -> int:
        """Disable the active addresses of ``kind`` with these keys (a provider said they are
        gone), only ``provider``'s when given; how many changed."""
        if not keys:
            return 0
        conditions = [
            RecipientAddress.kind == kind,
            RecipientAddress.key.in_(list(keys)),
            RecipientAddress.state == ACTIVE,
        ]
        if provider is not None:
            conditions.append(RecipientAddress.provider == provider)
        stmt = (
            update(RecipientAddress)
            .where(*conditions)
            .values(state=DISABLED, disabled_reason=reason, disabled_at=at)
        )
        result = await self.session.execute(stmt)
        return int(result.rowcount or 0)  # type: ignore[attr-defined]

    async def mark_used(self, *, kind: str, keys: Sequence[str], at: datetime) -> None:
        if not keys:
            return
        stmt = (
            update(RecipientAddress)
            .where(RecipientAddress.kind == kind, RecipientAddress.key.in_(list(keys)))
            .values(last_used_at=at)
        )
        await self.session.execute(stmt)


class RecipientSyncRepository(RowRepository[RecipientSync]):
    async def get(self, sync_id: uuid.UUID, *, for_update: bool = False) -> RecipientSync | None:
        return await self.session.get(
            RecipientSync, sync_id, with_for_update=for_update, populate_existing=True
        )

    async def newest_running(self, *, quiet_since: datetime) -> RecipientSync | None:
        """Of the running jobs whose runner last committed a page (or took the job) before
        ``quiet_since`` (stalled ones), the one that ran last."""
        last = func.coalesce(
            RecipientSync.heartbeat_at, RecipientSync.started_at, RecipientSync.created_at
        )
        stmt = (
            select(RecipientSync)
            .where(RecipientSync.status == "RUNNING", last < quiet_since)
            .order_by(last.desc())
            .limit(1)
        )
        return (await self.session.execute(stmt)).scalars().first()


async def forget_addresses(session: AsyncSession, user_id: str) -> int:
    """Delete the user's channel addresses (web push, mobile, chat); how many went."""
    addresses = await session.execute(
        delete(RecipientAddress).where(RecipientAddress.user_id == user_id)
    )
    return int(addresses.rowcount or 0)  # type: ignore[attr-defined]


async def forget_user(session: AsyncSession, user_id: str) -> int:
    """Delete the user's recipient row and addresses; how many rows went."""
    addresses = await forget_addresses(session, user_id)
    recipient = await session.execute(delete(RecipientRow).where(RecipientRow.user_id == user_id))
    return addresses + int(recipient.rowcount or 0)  # type: ignore[attr-defined]
