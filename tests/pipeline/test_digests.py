"""Digests through a real worker and beat: collected per user, released as one message."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import text

from tests.conftest import scalar
from tests.factories import create_template, token_for
from tests.pipeline.servers import eventually

REGISTER = """mutation($input: RegisterEventTypeInput!) { registerEventType(input: $input) {
  __typename ... on EventType { name digest { everySeconds cron key templateSlug } }
  ... on Error { code message field } } }"""
SEND = """mutation($input: EventInput!) { sendEvent(input: $input) {
  ... on EventAccepted { eventId } } }"""
EVENT = """query($id: ID!) { event(id: $id) { deliveries { userId status } } }"""
INBOX = """{ inbox(first: 5) { edges { node { eventType title body } } } }"""
PREFS = """mutation($input: PreferencesInput!) { setPreferences(input: $input) {
  __typename ... on Preferences { digestCadence { eventType cadence } }
  ... on Error { code message field } } }"""

COLLECTED = "SELECT count(*) FROM digest_items WHERE event_type = :t"


@pytest.fixture
def admin(settings: Any) -> str:
    return token_for(settings, "admin", sub="admin-digests")


@pytest.fixture
async def digest_type(e2e: Any, admin: str) -> str:
    suffix = uuid.uuid4().hex[:8]
    single = [{"channel": "IN_APP", "locale": "en", "title": "{{ payload.title }}", "body": "1"}]
    many = [
        {
            "channel": "IN_APP",
            "locale": "en",
            "title": "{{ payload.count }} new",
            "body": "{% for e in payload.events %}{{ e.title }};{% endfor %}",
        }
    ]
    for slug, content in ((f"news-{suffix}", single), (f"news-digest-{suffix}", many)):
        await create_template(e2e, admin, slug, content)
    name = f"news.{suffix}"
    registered = await e2e(
        REGISTER,
        {
            "input": {
                "name": name,
                "templateSlug": f"news-{suffix}",
                "channels": ["IN_APP"],
                "digest": {"everySeconds": 3600, "templateSlug": f"news-digest-{suffix}"},
            }
        },
        token=admin,
    )
    assert registered["data"]["registerEventType"]["digest"] == {
        "everySeconds": 3600,
        "cron": None,
        "key": None,
        "templateSlug": f"news-digest-{suffix}",
    }
    return name


async def send(e2e: Any, settings: Any, name: str, user: str, title: str) -> str:
    body = await e2e(
        SEND,
        {"input": {"type": name, "userIds": [user], "payload": {"title": title}}},
        token=token_for(settings, "service", sub="svc"),
    )
    event_id: str = body["data"]["sendEvent"]["eventId"]
    return event_id


async def test_events_are_collected_and_released_as_one_message(
    e2e, settings, admin, digest_type, engine, beat
):
    ids = [await send(e2e, settings, digest_type, "u-chen", t) for t in ("A", "B", "C")]

    async def collected() -> int:
        n = await scalar(engine, COLLECTED, t=digest_type)
        return int(n) if n == 3 else 0

    await eventually(collected, timeout=20)
    body = await e2e(EVENT, {"id": ids[0]}, token=admin)
    assert body["data"]["event"]["deliveries"] == []  # nothing sent on its own
    async with engine.connect() as conn:  # the window ends now
        await conn.execute(
            text("UPDATE digest_items SET due_at = now() WHERE event_type = :t"),
            {"t": digest_type},
        )
        await conn.commit()
    chen = token_for(settings, "user", sub="u-chen")

    async def digest_arrived() -> dict[str, Any] | None:
        items = (await e2e(INBOX, token=chen))["data"]["inbox"]["edges"]
        found = [e["node"] for e in items if e["node"]["eventType"] == digest_type]
        return found[0] if found else None

    item = await eventually(digest_arrived, timeout=20)
    assert (item["title"], item["body"]) == ("3 new", "A;B;C;")
    assert await scalar(engine, COLLECTED, t=digest_type) == 0


async def test_a_user_who_chose_instant_gets_each_event(e2e, settings, admin, digest_type):
    saved = await e2e(
        PREFS,
        {
            "input": {
                "userId": "u-bruno",
                "digestCadence": [{"eventType": digest_type, "cadence": "instant"}],
            }
        },
        token=admin,
    )
    assert saved["data"]["setPreferences"]["digestCadence"] == [
        {"eventType": digest_type, "cadence": "instant"}
    ]
    event_id = await send(e2e, settings, digest_type, "u-bruno", "now")

    async def sent() -> bool:
        body = await e2e(EVENT, {"id": event_id}, token=admin)
        return [d["status"] for d in body["data"]["event"]["deliveries"]] == ["SENT"]

    await eventually(sent, timeout=20)
    bad = await e2e(
        PREFS,
        {"input": {"digestCadence": [{"eventType": digest_type, "cadence": "yearly"}]}},
        token=token_for(settings, "user", sub="u-bruno"),
    )
    assert bad["data"]["setPreferences"]["field"] == "digestCadence"


async def test_digest_rules_are_checked(e2e, admin, digest_type):
    for digest, field in (
        ({"everySeconds": 10}, "digest.everySeconds"),
        ({"cron": "0 9 * *"}, "digest.cron"),
        ({}, "digest"),
        ({"everySeconds": 3600, "templateSlug": "missing"}, "digest.templateSlug"),
    ):
        body = await e2e(
            REGISTER,
            {
                "input": {
                    "name": digest_type,
                    "templateSlug": "welcome",
                    "channels": ["EMAIL"],
                    "digest": digest,
                }
            },
            token=admin,
        )
        assert body["data"]["registerEventType"]["field"] == field, (digest, body)
