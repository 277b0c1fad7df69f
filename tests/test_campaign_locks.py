"""Locks between the API and the workers on a running campaign: a page claim takes the
campaign's row before its run's, in the order pause and cancel take them, so the two cannot
deadlock; and a mutation that PostgreSQL undoes to break a deadlock is a typed CONFLICT that
changed nothing. Real PostgreSQL, rows committed (locks are between connections)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import delete, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.config import Settings
from backend.db.models import Campaign, CampaignRun, Template
from backend.db.session import create_sessionmaker
from backend.schema.context import Services
from backend.services.campaigns import claim_page
from tests.conftest import GraphQL, in_process_client
from tests.factories import (
    CREATE_TEMPLATE,
    RecordingQueue,
    delivery_context,
    template_input,
    token_for,
)

CAMPAIGN = """__typename ... on Campaign { id status } ... on Error { code message field }"""
CREATE = "mutation($input: CampaignInput!) { createCampaign(input: $input) { " + CAMPAIGN + " } }"
PAUSE = "mutation($id: ID!) { pauseCampaign(id: $id) { " + CAMPAIGN + " } }"


@dataclass
class Running:
    gql: GraphQL
    token: str
    campaign_id: uuid.UUID
    run_id: uuid.UUID


class NoAudience:
    """The campaigns here name their users: the platform's user list is never read."""

    async def list_page(self, page: int, page_size: int, *, cache: bool = True) -> Any:
        raise AssertionError("the audience is a list of user ids")


@pytest.fixture
async def running(
    app: Any, app_services: Services, engine: AsyncEngine, settings: Settings
) -> AsyncIterator[Running]:
    """A campaign started at once (one in-app run to one user, its first page unclaimed),
    made through the in-process API with its writes committed; deleted after the test."""
    slug = f"locks-{uuid.uuid4().hex[:8]}"
    token = token_for(settings, "manager", sub="mgr-locks")
    async with in_process_client(app, app_services, create_sessionmaker(engine)) as client:
        gql = GraphQL(client, settings)
        made = await gql(CREATE_TEMPLATE, {"input": template_input(slug)}, token=token)
        assert made["data"]["createTemplate"]["__typename"] == "Template", made
        campaign = {
            "name": "Locks",
            "templateSlug": slug,
            "channels": ["IN_APP"],
            "audience": {"userIds": ["u-locks"]},
            "payload": {"site": "Herald"},
        }
        body = await gql(CREATE, {"input": campaign}, token=token)
        created = body["data"]["createCampaign"]
        assert created["status"] == "RUNNING", body
        campaign_id = uuid.UUID(created["id"])
        async with engine.connect() as conn:
            run_id = await conn.scalar(
                select(CampaignRun.id).where(CampaignRun.campaign_id == campaign_id)
            )
        assert run_id is not None
        try:
            yield Running(gql, token, campaign_id, run_id)
        finally:
            async with engine.begin() as conn:
                await conn.execute(delete(Campaign).where(Campaign.id == campaign_id))
                await conn.execute(delete(Template).where(Template.slug == slug))


async def _until_a_lock_is_awaited(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        for _ in range(200):
            waiting = await conn.scalar(
                text(
                    "SELECT count(*) FROM pg_locks WHERE NOT granted AND locktype = 'transactionid'"
                )
            )
            await conn.rollback()  # a fresh snapshot of pg_locks each time
            if waiting:
                return
            await asyncio.sleep(0.025)
    raise AssertionError("nothing waited for a lock within 5 s")


async def test_a_last_page_claim_waits_for_the_campaign_before_it_locks_the_run(
    running: Running, engine: AsyncEngine, settings: Settings
) -> None:
    ctx = delivery_context(settings, engine, None, queue=RecordingQueue())

    async def claim() -> Any:
        async with ctx.sessionmaker() as session, session.begin():
            return await claim_page(
                ctx, session, run_id=str(running.run_id), page=0, users=NoAudience()
            )

    # A pause in the middle of its transaction: it holds the campaign and is about to
    # stop the campaign's runs.
    async with engine.connect() as pause:
        await pause.begin()
        await pause.execute(text("SET LOCAL lock_timeout = '3s'"))
        await pause.execute(
            select(Campaign.id).where(Campaign.id == running.campaign_id).with_for_update()
        )
        claimed = asyncio.create_task(claim())
        await _until_a_lock_is_awaited(engine)  # the claim waits for the campaign
        # The run is not locked by the waiting claim: the pause goes on and commits.
        await pause.execute(
            update(CampaignRun).where(CampaignRun.id == running.run_id).values(status="paused")
        )
        await pause.commit()
    page = await claimed
    assert not page.advanced  # the paused run is not moved on
    async with engine.connect() as conn:
        status = await conn.scalar(
            select(CampaignRun.status).where(CampaignRun.id == running.run_id)
        )
    assert status == "paused"


async def test_a_mutation_undone_to_break_a_deadlock_is_a_conflict_that_changed_nothing(
    running: Running, engine: AsyncEngine
) -> None:
    # A transaction that locks the run, then the campaign: the order a pause must not meet.
    async with engine.connect() as other:
        await other.begin()
        # PostgreSQL breaks a deadlock in the transaction that checks first: the pause's.
        await other.execute(text("SET LOCAL deadlock_timeout = '10s'"))
        await other.execute(
            update(CampaignRun)
            .where(CampaignRun.id == running.run_id)
            .values(updated_at=func.now())
        )
        paused = asyncio.create_task(
            running.gql(PAUSE, {"id": str(running.campaign_id)}, token=running.token)
        )
        await _until_a_lock_is_awaited(engine)  # the pause holds the campaign, waits on the run
        await other.execute(
            select(Campaign.id).where(Campaign.id == running.campaign_id).with_for_update()
        )
        body = await paused
        await other.rollback()

    result = body["data"]["pauseCampaign"]
    assert result["__typename"] == "ConflictError", body
    assert result["code"] == "CONFLICT"
    assert "retry" in result["message"]
    async with engine.connect() as conn:
        status = await conn.scalar(
            select(Campaign.status).where(Campaign.id == running.campaign_id)
        )
    assert status == "running"  # the pause changed nothing
    again = await running.gql(PAUSE, {"id": str(running.campaign_id)}, token=running.token)
    assert again["data"]["pauseCampaign"]["status"] == "PAUSED", again
