"""Tenants from the admin page: an admin makes one (the API's errors at their fields) and
changes its branding; the list shows it; a new API key is bound to one from the keys dialog; a
manager's navigation has no tenants screen."""

from __future__ import annotations

import uuid

import httpx
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


async def test_an_admin_binds_a_new_api_key_to_a_tenant(page: Page, stack: Stack) -> None:
    admin = token("tenants-admin", "admin")
    tenant_id = f"keys-{uuid.uuid4().hex[:6]}"
    await graphql(
        stack,
        "mutation($i: SaveTenantInput!) { saveTenant(input: $i) { __typename } }",
        {"i": {"id": tenant_id, "name": "Keys Co"}},
        admin,
    )
    await sign_in(page, stack, admin, "#/api-keys")
    await page.click("#new-api-key")
    await page.fill("#api-key-name", f"svc-{tenant_id}")
    await page.check("#grant-events-send")
    await page.select_option("#api-key-tenant", tenant_id)
    await page.click("#api-key-save")
    secret = await page.locator("#api-key-secret").input_value()
    await page.click("#api-key-done")
    row = page.locator(f"#api-keys-table tr[data-key-prefix='{secret[:13]}']")
    await expect(row.locator(".key-tenant")).to_have_text(tenant_id)
    async with httpx.AsyncClient(base_url=stack.api.url, timeout=10) as client:
        response = await client.post(
            "/graphql", json={"query": "{ viewer { tenantId } }"}, headers={"X-Api-Key": secret}
        )
    assert response.json()["data"] == {"viewer": {"tenantId": tenant_id}}
