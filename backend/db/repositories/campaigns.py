"""Queries on campaigns and their runs."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from backend.db.models import Campaign, CampaignRun
from backend.db.repositories.base import Repository, RowRepository


class CampaignRepository(RowRepository[Campaign]):
    async def get(self, campaign_id: uuid.UUID, *, lock: bool = False) -> Campaign | None:
        if lock:
            stmt = select(Campaign).where(Campaign.id == campaign_id).with_for_update()
            return (await self.session.execute(stmt)).scalar_one_or_none()
        return await self.session.get(Campaign, campaign_id)

    async def next_run_at(self, campaign_id: uuid.UUID) -> datetime | None:
        """The campaign's next run time, read without loading (or locking) the row."""
        stmt = select(Campaign.next_run_at).where(Campaign.id == campaign_id)
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def page(
        self,
        *,
        statuses: Sequence[str] | None,
        search: str | None,
        after: tuple[datetime, uuid.UUID] | None,
        limit: int,
        tenant_id: str | None = None,
    ) -> list[Campaign]:
        """Newest first; ``after`` is the (created_at, id) of the last row of the previous page.
        ``tenant_id``: that tenant's campaigns only."""
        stmt = select(Campaign).order_by(Campaign.created_at.desc(), Campaign.id.desc())
        if tenant_id is not None:
            stmt = stmt.where(Campaign.tenant_id == tenant_id)
        if statuses:
            stmt = stmt.where(Campaign.status.in_(statuses))
        if search:
            pattern = (
                "%" + search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            )
            stmt = stmt.where(Campaign.name.ilike(pattern))
        if after is not None:
            created_at, last_id = after
            stmt = stmt.where(
                (Campaign.created_at < created_at)
                | ((Campaign.created_at == created_at) & (Campaign.id < last_id))
            )
        return list((await self.session.execute(stmt.limit(limit))).scalars())

    async def scheduled(self) -> list[Campaign]:
        """Campaigns waiting for a run (what beat must have an entry for)."""
        stmt = select(Campaign).where(
            Campaign.status.in_(("scheduled", "running")), Campaign.next_run_at.is_not(None)
        )
        return list((await self.session.execute(stmt)).scalars())


class CampaignRunRepository(Repository):
    async def start(self, run: CampaignRun) -> CampaignRun | None:
        """Insert the run unless its (campaign, scheduled time) exists: None when it does."""
        stmt = (
            insert(CampaignRun)
            .values(
                id=run.id,
                campaign_id=run.campaign_id,
                scheduled_for=run.scheduled_for,
                event_id=run.event_id,
                kind=run.kind,
                test_user_id=run.test_user_id,
                status=run.status,
                next_page=0,
                recipients=0,
            )
            .on_conflict_do_nothing(constraint="uq_campaign_runs_slot")
            .returning(CampaignRun.id)
        )
        inserted = (await self.session.execute(stmt)).scalar_one_or_none()
        if inserted is None:
            return None
        return await self.session.get(CampaignRun, inserted)

    async def get(self, run_id: uuid.UUID) -> CampaignRun | None:
        return await self.session.get(CampaignRun, run_id, populate_existing=True)

    async def for_campaign(self, campaign_id: uuid.UUID, limit: int) -> list[CampaignRun]:
        stmt = (
            select(CampaignRun)
            .where(CampaignRun.campaign_id == campaign_id)
            .order_by(CampaignRun.scheduled_for.desc())
            .limit(limit)
        )
        return list((await self.session.execute(stmt)).scalars())

    async def unfinished(self, campaign_id: uuid.UUID) -> list[CampaignRun]:
        stmt = select(CampaignRun).where(
            CampaignRun.campaign_id == campaign_id,
            CampaignRun.status.in_(("running", "paused")),
        )
        return list((await self.session.execute(stmt)).scalars())

    async def advance(
        self,
        run_id: uuid.UUID,
        *,
        page: int,
        cursor: str | None,
        recipients: int,
        status: str,
        now: datetime,
    ) -> bool:
        """Move a run past ``page``; False when another task already did (a duplicate)."""
        stmt = (
            update(CampaignRun)
            .where(
                CampaignRun.id == run_id,
                CampaignRun.next_page == page,
                CampaignRun.status == "running",
            )
            .values(
                next_page=page + 1,
                cursor=cursor,
                recipients=CampaignRun.recipients + recipients,
                status=status,
                updated_at=now,
                finished_at=now if status != "running" else None,
            )
        )
        result = await self.session.execute(stmt)
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def set_status(
        self, run_ids: Sequence[uuid.UUID], status: str, *, now: datetime, expected: Sequence[str]
    ) -> list[CampaignRun]:
        if not run_ids:
            return []
        stmt = (
            update(CampaignRun)
            .where(CampaignRun.id.in_(run_ids), CampaignRun.status.in_(expected))
            .values(
                status=status,
                updated_at=now,
                finished_at=now if status in ("completed", "cancelled") else None,
            )
            .returning(CampaignRun)
        )
        return list((await self.session.execute(stmt)).scalars())

    async def stalled(self, before: datetime, limit: int) -> list[CampaignRun]:
        """Running runs with no progress since ``before``: their next page task was lost."""
        stmt = (
            select(CampaignRun)
            .where(CampaignRun.status == "running", CampaignRun.updated_at < before)
            .order_by(CampaignRun.updated_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        return list((await self.session.execute(stmt)).scalars())

    async def touch(self, run_ids: Sequence[uuid.UUID], now: datetime) -> None:
        if run_ids:
            await self.session.execute(
                update(CampaignRun).where(CampaignRun.id.in_(run_ids)).values(updated_at=now)
            )

    async def count_unfinished(self, campaign_id: uuid.UUID) -> int:
        stmt = select(func.count()).where(
            CampaignRun.campaign_id == campaign_id, CampaignRun.status == "running"
        )
        return int((await self.session.execute(stmt)).scalar_one())


# Campaign and run statuses (backend.services.campaigns) as stored: a campaign in one of these
# may still start a run, and a run in one of these may still send a page.
_WAITING_CAMPAIGNS = ("draft", "scheduled", "running", "paused")
_UNFINISHED_RUNS = ("running", "paused")

_DROP_FROM_AUDIENCES = text(
    "UPDATE campaigns SET updated_at = now(), audience = jsonb_set(audience, '{user_ids}', "
    "(SELECT COALESCE(jsonb_agg(u ORDER BY n), '[]'::jsonb) "
    " FROM jsonb_array_elements(audience->'user_ids') WITH ORDINALITY AS x(u, n) "
    " WHERE u <> to_jsonb(CAST(:user_id AS text)))) "
    "WHERE audience->'user_ids' @> jsonb_build_array(CAST(:user_id AS text)) "
    "RETURNING id, status, jsonb_array_length(audience->'user_ids') AS remaining"
)


async def forget_user(session: AsyncSession, user_id: str) -> int:
    """Take the user out of every campaign audience that lists them (finished ones too: the
    list names them). A campaign that may still run and is left with nobody is cancelled, with
    its unfinished runs; its RedBeat entry then fires into a cancelled row, which runs nothing,
    and the beat's reconciliation removes it. Test runs sent to the user forget whom they went
    to. Returns how many campaigns changed."""
    rows = (await session.execute(_DROP_FROM_AUDIENCES, {"user_id": user_id})).all()
    emptied = [row.id for row in rows if row.status in _WAITING_CAMPAIGNS and not row.remaining]
    if emptied:
        await session.execute(
            update(Campaign)
            .where(Campaign.id.in_(emptied))
            .values(status="cancelled", next_run_at=None, updated_at=func.now())
        )
        await session.execute(
            update(CampaignRun)
            .where(CampaignRun.campaign_id.in_(emptied), CampaignRun.status.in_(_UNFINISHED_RUNS))
            .values(status="cancelled", finished_at=func.now(), updated_at=func.now())
        )
    await session.execute(
        update(CampaignRun).where(CampaignRun.test_user_id == user_id).values(test_user_id=None)
    )
    return len(rows)
