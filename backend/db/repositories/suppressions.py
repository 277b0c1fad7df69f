"""Queries on the email suppression list."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import insert

from backend.db.models import EmailSuppression
from backend.db.repositories.base import Repository


class SuppressionRepository(Repository):
    async def add(
        self, *, address: str, kind: str, provider: str, reason: str, delivery_id: str | None
    ) -> bool:
        """Suppress ``address`` (lower-cased by the caller). A second report for an address
        already suppressed keeps the first row. Returns whether a row was added."""
        stmt = (
            insert(EmailSuppression)
            .values(
                address=address,
                kind=kind,
                provider=provider,
                reason=reason,
                delivery_id=delivery_id,
            )
            .on_conflict_do_nothing(index_elements=[EmailSuppression.address])
            .returning(EmailSuppression.address)
        )
        return (await self.session.execute(stmt)).first() is not None

    async def suppressed(self, addresses: Collection[str]) -> dict[str, EmailSuppression]:
        """The rows of those ``addresses`` (lower-cased) that are suppressed, by address."""
        if not addresses:
            return {}
        stmt = select(EmailSuppression).where(EmailSuppression.address.in_(list(addresses)))
        return {row.address: row for row in (await self.session.execute(stmt)).scalars()}

    async def page(
        self,
        *,
        address_contains: str | None,
        kind: str | None,
        after: tuple[datetime, str] | None,
        limit: int,
    ) -> list[EmailSuppression]:
        """Newest first."""
        stmt = (
            select(EmailSuppression)
            .order_by(EmailSuppression.created_at.desc(), EmailSuppression.address.desc())
            .limit(limit)
        )
        if address_contains:
            pattern = address_contains.lower().replace("\\", "\\\\")
            pattern = pattern.replace("%", "\\%").replace("_", "\\_")
            stmt = stmt.where(EmailSuppression.address.like(f"%{pattern}%", escape="\\"))
        if kind is not None:
            stmt = stmt.where(EmailSuppression.kind == kind)
        if after is not None:
            at, address = after
            stmt = stmt.where(
                (EmailSuppression.created_at < at)
                | ((EmailSuppression.created_at == at) & (EmailSuppression.address < address))
            )
        return list((await self.session.execute(stmt)).scalars())

    async def remove(self, address: str) -> bool:
        """Delete the row of ``address``; whether there was one."""
        stmt = delete(EmailSuppression).where(EmailSuppression.address == address)
        result = await self.session.execute(stmt)
        return bool(getattr(result, "rowcount", 0))

    async def count(self) -> int:
        return int(
            (
                await self.session.execute(select(func.count()).select_from(EmailSuppression))
            ).scalar_one()
        )
