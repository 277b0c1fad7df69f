"""The Send screen with more templates than its first list: searched by name or slug, the
choice kept while the list changes, and a template named in the address found wherever it
sorts."""

from __future__ import annotations

import asyncio
import uuid

from playwright.async_api import Page, expect

from tests.admin.conftest import Stack, create_template, go, graphql, sign_in

CONTENT = [{"channel": "EMAIL", "subject": "Hi {{ user.first_name }}", "body": "Hello."}]
DELETE = "mutation($slug: String!) { deleteTemplate(slug: $slug) { __typename } }"


async def test_the_send_screen_searches_past_its_first_100_templates(
    page: Page, stack: Stack, admin_token: str
) -> None:
    run = uuid.uuid4().hex[:8]
    # A hundred templates sorting just before the target, after every other test's: the
    # screen's first list (100, by slug) holds none past them.
    fillers = [f"zz-{run}-a-{n:03}" for n in range(100)]
    for start in range(0, len(fillers), 10):
        await asyncio.gather(
            *(
                create_template(stack, admin_token, slug, f"Filler {slug}", CONTENT)
                for slug in fillers[start : start + 10]
            )
        )
    target = await create_template(
        stack, admin_token, f"zz-{run}-b-target", f"Autumn offer {run}", CONTENT
    )
    option = page.locator(f"#send-template option[value='{target}']")
    try:
        await sign_in(page, stack, admin_token, "#/send")
        search = page.get_by_label("Find a template")
        await expect(search).to_be_visible()
        await expect(page.locator("#send-template-search-help")).to_contain_text(
            "The first 100 are listed: type to search the others."
        )
        await expect(option).to_have_count(0)

        # By part of its name: the list becomes what matches, and it can be chosen.
        await search.fill(f"autumn offer {run}")
        await expect(option).to_have_count(1)
        await expect(page.locator("#send-template-search-help")).to_have_text("1 match.")
        await page.select_option("#send-template", target)
        await expect(page.locator("#send-template-help")).to_have_text("Has content for Email.")

        # A search that matches nothing says so, and the choice stays.
        await search.fill(f"no-such-template-{run}")
        await expect(page.locator("#send-template-search-help")).to_have_text(
            f"No template matches “no-such-template-{run}”."
        )
        await expect(page.locator("#send-template")).to_have_value(target)
        await expect(page.locator("#send-channel-EMAIL")).to_be_enabled()

        # By slug, from another template's search: the earlier choice is still listed.
        await search.fill(fillers[7])
        await expect(page.locator(f"#send-template option[value='{fillers[7]}']")).to_have_count(1)
        await expect(option).to_have_count(1)

        # Named in the address (a bookmark, a link): chosen though it is not in the first list.
        await go(page, "#/templates")
        await expect(page.locator("#send-template")).to_have_count(0)
        await go(page, f"#/send?template={target}")
        await expect(page.locator("#send-template")).to_have_value(target)
        await expect(page.locator("#send-template-help")).to_have_text("Has content for Email.")
    finally:
        made = [*fillers, target]
        for start in range(0, len(made), 10):
            await asyncio.gather(
                *(
                    graphql(stack, DELETE, {"slug": slug}, admin_token)
                    for slug in made[start : start + 10]
                )
            )
