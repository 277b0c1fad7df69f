"""Tenants from the admin page: an admin makes one (the API's errors at their fields) and
changes its branding; the list shows it; a manager's navigation has no tenants screen."""

from __future__ import annotations

import uuid

from playwright.async_api import Page, expect

from tests.admin.conftest import Stack, go, graphql, screenshot, sign_in, token

TENANT = "query($id: ID!) { tenant(id: $id) { id name logoUrl primaryColor } }"


async def test_an_admin_makes_a_tenant_and_changes_its_branding(page: Page, stack: Stack) -> None:
    admin = token("tenants-admin", "admin")
    tenant_id = f"acme-{uuid.uuid4().hex[:6]}"
    await sign_in(page, stack, admin, "#/tenants")
    await expect(page.locator(".nav a[data-nav='tenants']")).to_have_attribute(
        "aria-current", "page"
    )
    await expect(page.locator(".page-title")).to_have_text("Tenants")

    await page.click("#new-tenant")
    await page.fill("#tenant-id", "Acme Corp")
    await page.fill("#tenant-name", "Acme")
    await page.click("#tenant-save")
    await expect(page.locator("#tenant-id-error")).to_contain_text("lowercase letters")
    await expect(page.locator("#tenant-id")).to_have_attribute("aria-invalid", "true")
    await page.fill("#tenant-id", tenant_id)
    await page.fill("#tenant-color", "red")
    await page.click("#tenant-save")
    await expect(page.locator("#tenant-color-error")).to_contain_text("#1a2b3c")
    await page.fill("#tenant-color", "#aa0000")
    await page.click("#tenant-save")
    await expect(page.locator(".toast")).to_contain_text(f"Tenant {tenant_id} created.")

    row = page.locator(f"#tenants-table tr[data-tenant-id='{tenant_id}']")
    await expect(row.locator(".tenant-name")).to_have_text("Acme")
    await expect(row.locator(".tenant-branding")).to_contain_text("#aa0000")

    # Changing it: the id stays, the name and logo change.
    await row.locator(".edit-tenant").click()
    await expect(page.locator("#tenant-id")).to_have_value(tenant_id)
    await expect(page.locator("#tenant-id")).to_have_attribute("readonly", "")
    await page.fill("#tenant-name", "Acme Inc.")
    await page.fill("#tenant-logo", "https://acme.example/logo.png")
    await page.click("#tenant-save")
    await expect(row.locator(".tenant-name")).to_have_text("Acme Inc.")
    await expect(row.locator(".tenant-branding a")).to_have_attribute(
        "href", "https://acme.example/logo.png"
    )
    await screenshot(page, "tenants")
    stored = await graphql(stack, TENANT, {"id": tenant_id}, admin)
    assert stored["tenant"] == {
        "id": tenant_id,
        "name": "Acme Inc.",
        "logoUrl": "https://acme.example/logo.png",
        "primaryColor": "#aa0000",
    }


async def test_managers_have_no_tenants_screen(page: Page, stack: Stack) -> None:
    await sign_in(page, stack, token("tenants-manager", "manager"), "#/topics")
    await expect(page.locator(".nav a[data-nav='topics']")).to_be_visible()
    await expect(page.locator(".nav a[data-nav='tenants']")).to_be_hidden()
    await go(page, "#/tenants")
    await expect(page.locator(".alert-error")).to_contain_text("admin")
