"""What every repository shares: it works in its caller's session, and the caller commits."""

from __future__ import annotations

from typing import ClassVar, Generic, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from backend.db.models import Base

RowT = TypeVar("RowT", bound=Base)


class Repository:
    """Queries on one kind of row, in the caller's session (flushed, never committed here)."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session


class RowRepository(Repository, Generic[RowT]):
    """A repository whose rows are added one ORM object at a time."""

    # Read the row back after the insert, for the columns the database fills in
    # (``created_at`` and the like) that the caller shows.
    refresh_after_add: ClassVar[bool] = False

    async def add(self, row: RowT) -> RowT:
        """Insert ``row`` (flushed, so a constraint it breaks raises here); returns it."""
        self.session.add(row)
        await self.session.flush()
        if self.refresh_after_add:
            await self.session.refresh(row)
        return row
