"""Topics from the admin page: created, searched, filled with pasted ids, paged through,
trimmed, edited and deleted, with typed errors at their fields; and a one-off send to a topic
from the Send screen, delivered by a real worker."""

from __future__ import annotations

import asyncio
import json
import re
import uuid

from playwright.async_api import Page, expect

from tests.admin.conftest import Stack, WorkerStack, go, graphql, screenshot, sign_in, token
from tests.admin.test_campaigns import email_template

ADD = """mutation($key: String!, $ids: [String!]!) { addToTopic(key: $key, userIds: $ids) {
  __typename ... on TopicMembersChanged { changed memberCount } } }"""
CREATE_TOPIC = """mutation($input: CreateTopicInput!) { createTopic(input: $input) {
  __typename ... on Error { code message } } }"""
TOPIC = "query($key: String!) { topic(key: $key) { key } }"
RECIPIENT = "demo-user-emma"  # in the stand-in's bundled demo users
RECIPIENT_EMAIL = "emma.walker@example.com"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def test_a_topic_is_created_filled_paged_trimmed_and_deleted(
    page: Page, stack: Stack
) -> None:
    manager = token("topics-manager", "manager")
    key = unique("product-news")
    # Another topic, so the list has something to search through.
    other = unique("beta-testers")
    created = await graphql(
        stack,
        CREATE_TOPIC,
        {"input": {"key": other, "name": "Beta testers", "selfService": True}},
        manager,
    )
    assert created["createTopic"]["__typename"] == "Topic", created
    await graphql(stack, ADD, {"key": other, "ids": ["u-1", "u-2", "u-3"]}, manager)

    await sign_in(page, stack, manager, "#/topics")
    await expect(page.locator(".nav a[data-nav='topics']")).to_have_attribute(
        "aria-current", "page"
    )
    listed = page.locator(f"#topics-table tr[data-topic-key='{other}']")
    await expect(listed).to_contain_text("3 members")
    await expect(listed.locator(".self-service")).to_have_text("Self-service")

    # A key the API refuses: its message at the key field, the dialog still open.
    await page.click("#new-topic")
    await page.fill("#topic-key", "Product News!")
    await page.fill("#topic-name", "Product news")
    await page.click("#topic-save")
    await expect(page.locator("#topic-key-error")).to_contain_text(
        "A topic key is 1-100 lowercase letters"
    )
    await expect(page.locator("#topic-key")).to_have_attribute("aria-invalid", "true")
    await page.fill("#topic-key", key)
    await page.fill("#topic-description", "Releases and changes, once a month.")
    await page.click("#topic-save")

    # Its screen: no members yet; 60 ids pasted, separated every which way.
    await expect(page).to_have_url(re.compile(f"#/topics/{key}$"))
    await expect(page.locator(".page-title")).to_contain_text(key)
    await expect(page.locator("#topic-member-count")).to_have_text("0 members")
    ids = [f"reader-{n:03d}" for n in range(60)]
    pasted = ", ".join(ids[:20]) + "\n" + " ".join(ids[20:40]) + "\n\n" + ",\n".join(ids[40:])
    await page.fill("#topic-add-ids", pasted + "\n" + ids[0])  # one twice: counted once
    await page.click("#topic-add")
    await expect(page.locator("#topic-changed")).to_have_text(
        "Added 60 users; the topic has 60 members."
    )
    await expect(page.locator("#topic-member-count")).to_have_text("60 members")
    rows = page.locator("#members-table tbody tr")
    await expect(rows).to_have_count(50)
    await expect(page.locator("#members-status")).to_have_text("Showing 50 of 60 members.")
    await page.click("#members-more")
    await expect(rows).to_have_count(60)
    await expect(page.locator("#members-more")).to_be_hidden()
    assert await rows.evaluate_all("rows => rows.map(r => r.dataset.userId)") == ids

    # Adding some again changes nothing, and says so.
    await page.fill("#topic-add-ids", f"{ids[1]} {ids[2]}")
    await page.click("#topic-add")
    await expect(page.locator("#topic-changed")).to_have_text(
        "Added 0 users; the topic has 60 members."
    )
    await screenshot(page, "topic-detail")

    # Remove one selected member.
    await page.check(f"#members-table tr[data-user-id='{ids[7]}'] input[type=checkbox]")
    await expect(page.locator("#members-remove")).to_have_text("Remove selected (1)")
    await page.click("#members-remove")
    await expect(page.locator("#topic-changed")).to_have_text(
        "Removed 1 user; the topic has 59 members."
    )
    await expect(page.locator(f"#members-table tr[data-user-id='{ids[7]}']")).to_have_count(0)
    await expect(page.locator("#members-remove")).to_be_disabled()

    # Edit: the key stays, the name changes.
    await page.click("#topic-edit")
    await expect(page.locator("#topic-key")).to_have_attribute("readonly", "")
    await page.fill("#topic-name", "Product news (monthly)")
    await page.click("#topic-save")
    await expect(page.locator("#topic-name-value")).to_contain_text("Product news (monthly)")

    # The list, searched: the new topic with its count.
    await go(page, "#/topics")
    await page.fill("#topic-search", key)
    row = page.locator(f"#topics-table tr[data-topic-key='{key}']")
    await expect(row).to_contain_text("59 members")
    await expect(page.locator("#topics-table tbody tr")).to_have_count(1)
    await page.fill("#topic-search", "")
    await expect(listed).to_be_visible()
    await screenshot(page, "topics")

    # A key that is taken: the conflict at the key field.
    await page.click("#new-topic")
    await page.fill("#topic-key", key)
    await page.fill("#topic-name", "Again")
    await page.click("#topic-save")
    await expect(page.locator("#topic-key-error")).to_have_text(f"A topic with key '{key}' exists")
    await page.keyboard.press("Escape")
    await expect(page.locator("#topic-dialog")).to_have_count(0)

    # Delete it, from its screen.
    await page.click(f"#topics-table tr[data-topic-key='{key}'] a.topic-link")
    await expect(page.locator("#topic-member-count")).to_have_text("59 members")
    await page.click("#topic-delete")
    await expect(page.locator("#topic-delete-dialog")).to_contain_text("59 members")
    await page.click("#topic-delete-confirm")
    await expect(page).to_have_url(re.compile("#/topics$"))
    await expect(page.locator(f"#topics-table tr[data-topic-key='{key}']")).to_have_count(0)
    assert (await graphql(stack, TOPIC, {"key": key}, manager))["topic"] is None


async def test_a_one_off_send_to_a_topic_from_the_send_screen(
    page: Page, stack: Stack, worker_stack: WorkerStack, admin_token: str
) -> None:
    key = unique("readers")
    slug = await email_template(stack, admin_token)
    code = uuid.uuid4().hex[:6]
    created = await graphql(
        stack, CREATE_TOPIC, {"input": {"key": key, "name": "Readers"}}, admin_token
    )
    assert created["createTopic"]["__typename"] == "Topic", created
    await graphql(stack, ADD, {"key": key, "ids": [RECIPIENT]}, admin_token)
    first = uuid.uuid4().hex[:6]
    for n in range(20):
        before = {"input": {"key": f"0-{first}-{n:02}", "name": f"Sorted first {n}"}}
        made = await graphql(stack, CREATE_TOPIC, before, admin_token)
        assert made["createTopic"]["__typename"] == "Topic", made

    await sign_in(page, stack, admin_token, "#/send")
    await page.select_option("#send-template", slug)
    await page.check("#send-channel-EMAIL")
    await page.fill("#send-payload", json.dumps({"offer": code}))
    await page.check("#recipients-topics")
    await expect(page.locator("#send-recipients")).to_be_hidden()

    # No topic named: the page says so at the field.
    await page.click("#send-submit")
    await expect(page.locator("#send-recipients-error")).to_contain_text("Name one or more topics")
    # An unknown one: the API's NOT_FOUND, at the same field.
    await page.fill("#send-topics", "no-such-topic-anywhere")
    await page.click("#send-submit")
    await expect(page.locator("#send-recipients-error")).to_contain_text("no-such-topic-anywhere")

    # Picked from the suggestions, which search every topic as the key is typed: the page
    # first lists 20, and twenty topics whose keys sort before this one keep it off that list.
    await page.fill("#send-topics", "")
    await expect(page.locator(f"button[data-topic='{key}']")).to_have_count(0)
    await page.locator("#send-topics").press_sequentially(key[: len("readers-") + 4])
    await page.click(f"button[data-topic='{key}']")
    # The fragment typed is completed, not kept beside the key.
    await expect(page.locator("#send-topics")).to_have_value(key)
    await page.locator("#send-topics").press_sequentially(", zz-no-such")
    suggestions = page.get_by_role("group", name="Topics")
    await expect(suggestions).to_contain_text("No topic matches “zz-no-such”")
    await page.fill("#send-topics", key)
    await page.click("#send-submit")
    await expect(page.locator("#send-result")).to_contain_text(
        f"Accepted for delivery to the members of {key}."
    )
    assert await page.locator("#sent-event-id").text_content()

    # The worker expands the topic: the member's mail goes out, once.
    for _ in range(100):
        if [m for m in worker_stack.smtp.to(RECIPIENT_EMAIL) if code in m.as_string()]:
            break
        await asyncio.sleep(0.1)
    mails = [m for m in worker_stack.smtp.to(RECIPIENT_EMAIL) if code in m.as_string()]
    assert len(mails) == 1
    assert mails[0]["Subject"] == "Hello Emma"
