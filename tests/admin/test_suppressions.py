"""Email suppressions in the admin page: reached from Recipients, searched by part of an
address and by reason, and one removed behind a confirmation, after which the API no longer
lists it."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from playwright.async_api import Page, expect
from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from backend.db.models import EmailSuppression
from backend.services import suppressions
from backend.services.suppressions import SuppressionKind
from tests.admin.conftest import Stack, screenshot, sign_in, token


@pytest.fixture
async def listed(engine: AsyncEngine) -> AsyncIterator[tuple[str, list[str]]]:
    """Three suppressed addresses sharing a marker (committed: the admin page's API is its own
    process), removed afterwards."""
    marker = f"supp{uuid.uuid4().hex[:8]}"
    addresses = [f"{name}.{marker}@example.org" for name in ("ana", "bo", "cy")]
    async with AsyncSession(engine) as session:
        rows = (
            (addresses[0], SuppressionKind.HARD_BOUNCE, "ses", "Permanent 5.1.1 user unknown"),
            (addresses[1], SuppressionKind.COMPLAINT, "mailgun", "complained"),
            (addresses[2], SuppressionKind.HARD_BOUNCE, "dsn", "failed 5.1.2 bad domain"),
        )
        for address, kind, provider, reason in rows:
            await suppressions.suppress(
                session,
                address=address,
                kind=kind,
                provider=provider,
                reason=reason,
                delivery_id=None,
            )
        await session.commit()
    yield marker, addresses
    async with engine.begin() as conn:
        await conn.execute(delete(EmailSuppression).where(EmailSuppression.address.in_(addresses)))


async def test_a_manager_finds_and_removes_a_suppressed_address(
    page: Page, stack: Stack, engine: AsyncEngine, listed: tuple[str, list[str]]
) -> None:
    marker, addresses = listed
    await sign_in(page, stack, token("supp-manager", "manager"), "#/recipients")
    await page.click("#open-suppressions")
    await expect(page.locator(".page-title")).to_have_text("Email suppressions")
    await expect(page.locator("a[data-nav='recipients']")).to_have_attribute("aria-current", "page")

    await page.fill("#suppression-search", marker.upper())
    await page.press("#suppression-search", "Enter")
    rows = page.locator("#suppressions-table tbody tr")
    await expect(rows).to_have_count(3)
    ana = page.locator(f"#suppressions-table tr[data-address='{addresses[0]}']")
    await expect(ana).to_contain_text("Hard bounce")
    await expect(ana).to_contain_text("ses")
    await expect(ana).to_contain_text("5.1.1 user unknown")
    await screenshot(page, "email-suppressions")

    await page.select_option("#suppression-kind", "COMPLAINT")
    await page.click("form[aria-label='Search suppressed addresses'] button[type=submit]")
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_have_attribute("data-address", addresses[1])
    await expect(rows.first).to_contain_text("Spam complaint")
    assert "kind=COMPLAINT" in page.url

    await rows.first.get_by_role("button", name=f"Remove the suppression of {addresses[1]}").click()
    dialog = page.locator("#remove-suppression-dialog")
    await expect(dialog).to_contain_text(f"Email {addresses[1]} again?")
    await page.click("#remove-suppression-confirm")
    await expect(page.locator("[role=status].alert-success")).to_contain_text(
        f"{addresses[1]} is no longer suppressed"
    )
    await expect(page.locator(".empty-state")).to_contain_text("No suppressed address matches.")
    async with AsyncSession(engine) as session:
        left = await suppressions.suppressed(session, addresses=addresses)
    assert sorted(left) == sorted([addresses[0], addresses[2]])
