"""Queries on topics and their members."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from backend.db.models import Topic, TopicMember
from backend.db.repositories.base import Repository, RowRepository


def _like(search: str) -> str:
    return "%" + search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


class TopicRepository(RowRepository[Topic]):
    async def get(self, key: str, *, lock: bool = False) -> Topic | None:
        return await self.session.get(Topic, key, with_for_update=lock)

    async def delete(self, topic: Topic) -> None:
        await self.session.delete(topic)
        await self.session.flush()

    async def page(self, *, search: str | None, after: str | None, limit: int) -> list[Topic]:
        """By key; ``after`` is the last key of the previous page."""
        stmt = select(Topic).order_by(Topic.key)
        if search:
            pattern = _like(search)
            stmt = stmt.where(Topic.key.ilike(pattern) | Topic.name.ilike(pattern))
        if after is not None:
            stmt = stmt.where(Topic.key > after)
        return list((await self.session.execute(stmt.limit(limit))).scalars())

    async def existing_keys(self, keys: Sequence[str]) -> set[str]:
        stmt = select(Topic.key).where(Topic.key.in_(list(keys)))
        return set((await self.session.execute(stmt)).scalars())

    async def of_user(self, user_id: str, *, also: Sequence[str] = ()) -> list[Topic]:
        """The topics the user is in, and those of ``also``, by key."""
        member = select(TopicMember.topic_key).where(TopicMember.user_id == user_id)
        stmt = (
            select(Topic)
            .where(Topic.key.in_(member) | Topic.key.in_(list(also)))
            .order_by(Topic.key)
        )
        return list((await self.session.execute(stmt)).scalars())

    async def self_service(self) -> list[Topic]:
        stmt = select(Topic).where(Topic.self_service.is_(True)).order_by(Topic.key)
        return list((await self.session.execute(stmt)).scalars())


class TopicMemberRepository(Repository):
    async def add(self, topic_key: str, user_ids: Sequence[str], now: datetime) -> int:
        """Add members; those already in it are left as they are. How many were added."""
        if not user_ids:
            return 0
        stmt = (
            insert(TopicMember)
            .values([{"topic_key": topic_key, "user_id": u, "added_at": now} for u in user_ids])
            .on_conflict_do_nothing(index_elements=[TopicMember.topic_key, TopicMember.user_id])
        )
        result = await self.session.execute(stmt)
        return int(result.rowcount or 0)  # type: ignore[attr-defined]

    async def remove(self, topic_key: str, user_ids: Sequence[str]) -> int:
        if not user_ids:
            return 0
        stmt = delete(TopicMember).where(
            TopicMember.topic_key == topic_key, TopicMember.user_id.in_(list(user_ids))
        )
        result = await self.session.execute(stmt)
        return int(result.rowcount or 0)  # type: ignore[attr-defined]

    async def count(self, topic_key: str) -> int:
        stmt = select(func.count()).where(TopicMember.topic_key == topic_key)
        return int((await self.session.execute(stmt)).scalar_one())

    async def page(self, topic_key: str, *, after: str | None, limit: int) -> list[TopicMember]:
        """A topic's members by user id; ``after`` is the last user id of the previous page."""
        stmt = (
            select(TopicMember)
            .where(TopicMember.topic_key == topic_key)
            .order_by(TopicMember.user_id)
            .limit(limit)
        )
        if after is not None:
            stmt = stmt.where(TopicMember.user_id > after)
        return list((await self.session.execute(stmt)).scalars())

    async def union_page(
        self, topic_keys: Sequence[str], *, after: str | None, limit: int
    ) -> list[str]:
        """The distinct users of any of the topics, by user id, after ``after``: a user in
        two of them comes once (keyset pagination over the union)."""
        stmt = (
            select(TopicMember.user_id)
            .where(TopicMember.topic_key.in_(list(topic_keys)))
            .distinct()
            .order_by(TopicMember.user_id)
            .limit(limit)
        )
        if after is not None:
            stmt = stmt.where(TopicMember.user_id > after)
        return list((await self.session.execute(stmt)).scalars())

    async def memberships(self, user_id: str, topic_keys: Sequence[str]) -> set[str]:
        """Which of ``topic_keys`` the user is in."""
        if not topic_keys:
            return set()
        stmt = select(TopicMember.topic_key).where(
            TopicMember.user_id == user_id, TopicMember.topic_key.in_(list(topic_keys))
        )
        return set((await self.session.execute(stmt)).scalars())

    async def members_of(
        self, user_ids: Sequence[str], topic_keys: Sequence[str]
    ) -> dict[str, set[str]]:
        """For each of the users, the topics among ``topic_keys`` they are in."""
        found: dict[str, set[str]] = {}
        if not user_ids or not topic_keys:
            return found
        stmt = select(TopicMember.user_id, TopicMember.topic_key).where(
            TopicMember.user_id.in_(list(user_ids)), TopicMember.topic_key.in_(list(topic_keys))
        )
        for user_id, topic_key in (await self.session.execute(stmt)).all():
            found.setdefault(user_id, set()).add(topic_key)
        return found


async def forget_user(session: AsyncSession, user_id: str) -> int:
    """Delete the user's topic memberships; how many. (Their per-topic opt-outs live in
    ``user_preferences`` and go with that row.)"""
    result = await session.execute(delete(TopicMember).where(TopicMember.user_id == user_id))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
