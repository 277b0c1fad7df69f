"""The hosted preference page's topic checkboxes, in a real Chromium against ``herald api``: a
user in a self-service topic unticks it and saves; their preferences show the topic disabled,
and an event to the topic skips them while another member still gets it."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from playwright.async_api import Page, expect
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.channels import Channel
from backend.db.history.base import DeliveryStatus
from backend.services.deliveries import delivery_id
from backend.services.unsubscribe import sign_token
from tests.admin.conftest import Stack, graphql
from tests.conftest import make_settings
from tests.test_topics import (  # the worker's own dispatch, as the topic tests run it
    add_members,
    ctx,  # noqa: F401 - a fixture
    dispatch_all,
    topic_event,
)

PREFERENCES = """query($u: ID) { preferences(userId: $u) { disabledTopics } }"""


@pytest.fixture
async def promo(engine: AsyncEngine) -> AsyncIterator[tuple[str, str, str]]:
    """A self-service topic with two members, committed for real: (key, leaving, staying)."""
    prefix = f"pt{uuid.uuid4().hex[:8]}"
    key, leaving, staying = f"{prefix}-promo", f"{prefix}-leaves", f"{prefix}-stays"
    await add_members(engine, key, [leaving, staying])
    async with engine.begin() as conn:
        await conn.execute(
            text("UPDATE topics SET name = 'Offers and promotions', self_service = true "
                 "WHERE key = :k"),
            {"k": key},
        )  # fmt: skip
    yield key, leaving, staying
    async with engine.begin() as conn:
        await conn.execute(text("DELETE FROM topics WHERE key = :k"), {"k": key})
        await conn.execute(
            text("DELETE FROM user_preferences WHERE user_id LIKE :p"), {"p": f"{prefix}%"}
        )


async def test_unticking_a_topic_on_the_preference_page_opts_the_user_out(
    page: Page,
    stack: Stack,
    admin_token: str,
    promo: tuple[str, str, str],
    ctx,  # noqa: F811
) -> None:
    key, leaving, staying = promo
    link = sign_token(make_settings(), user_id=leaving, event_type="user_registered")

    await page.goto(f"{stack.api.url}/preferences/{link}")
    box = page.locator(f"input[name=topic][value='{key}']")
    await expect(page.locator("label", has=box)).to_contain_text("Offers and promotions")
    await expect(box).to_be_checked()
    await box.uncheck()
    await page.click("button[type=submit]")
    await expect(page.locator(".note")).to_contain_text("Saved")
    await expect(page.locator(f"input[name=topic][value='{key}']")).not_to_be_checked()
    # Still listed after a reload (opted out, no longer ticked), and the channels untouched.
    await page.goto(f"{stack.api.url}/preferences/{link}")
    await expect(page.locator(f"input[name=topic][value='{key}']")).not_to_be_checked()
    await expect(page.locator("input[name=channel]:checked")).to_have_count(4)

    data = await graphql(stack, PREFERENCES, {"u": leaving}, admin_token)
    assert data["preferences"]["disabledTopics"] == [key]

    event = topic_event([key])
    await dispatch_all(ctx, event)
    skipped = await ctx.history.get(delivery_id(event.id, leaving, Channel.IN_APP))
    assert skipped is not None and skipped.status is DeliveryStatus.SKIPPED
    assert key in (skipped.timeline[0].reason or "")
    kept = await ctx.history.get(delivery_id(event.id, staying, Channel.IN_APP))
    assert kept is not None and kept.status is not DeliveryStatus.SKIPPED
