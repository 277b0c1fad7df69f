"""End to end with real processes: sendEvent → RabbitMQ → Celery worker → channels → history."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import http_ece
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import text

from tests.factories import token_for
from tests.pipeline.servers import eventually
from tests.processes import Process

SEND = """mutation($input: EventInput!) { sendEvent(input: $input) { __typename
  ... on EventAccepted { eventId duplicate scheduledFor }
  ... on Error { code message field } } }"""

EVENT = """query($id: ID!) { event(id: $id) { id type deliveries { id userId channel status
  subject title attempts { number error provider } timeline { status reason } } } }"""


async def send(e2e: Any, settings: Any, **event: Any) -> dict[str, Any]:
    result = await e2e(SEND, {"input": event}, token=token_for(settings, "service", sub="svc"))
    return result["data"]["sendEvent"]


async def deliveries_when_final(e2e: Any, settings: Any, event_id: str, count: int) -> list[dict]:
    admin = token_for(settings, "admin")

    async def check() -> list[dict] | None:
        body = await e2e(EVENT, {"id": event_id}, token=admin)
        items = body["data"]["event"]["deliveries"]
        final = [d for d in items if d["status"] in ("SENT", "SKIPPED", "FAILED", "DEAD")]
        return items if len(items) == count and len(final) == count else None

    return await eventually(check, timeout=30)


async def test_welcome_email_and_in_app(e2e, settings, smtp):
    accepted = await send(e2e, settings, type="user_registered", userIds=["u-alice"])
    assert accepted["__typename"] == "EventAccepted" and accepted["duplicate"] is False
    items = await deliveries_when_final(e2e, settings, accepted["eventId"], 2)
    by_channel = {d["channel"]: d for d in items}
    assert by_channel["EMAIL"]["status"] == "SENT"
    assert by_channel["EMAIL"]["subject"] == "Welcome to Herald, Alice!"
    assert by_channel["IN_APP"]["status"] == "SENT"
    assert by_channel["IN_APP"]["title"] == "Welcome, Alice!"
    mails = [m for m in smtp.to("alice@example.com") if m["Subject"] == "Welcome to Herald, Alice!"]
    assert len(mails) == 1
    parts = {
        p.get_content_type(): p.get_payload(decode=True).decode()
        for p in mails[0].walk()
        if not p.is_multipart()
    }
    assert "thanks for joining us" in parts["text/plain"]
    assert "<p>Hello Alice,</p>" in parts["text/html"]
    assert [t["status"] for t in by_channel["EMAIL"]["timeline"]] == ["QUEUED", "SENDING", "SENT"]


async def test_user_locale_is_used(e2e, settings, smtp):
    accepted = await send(
        e2e, settings, type="user_registered", userIds=["u-bruno"], channels=["EMAIL"]
    )
    items = await deliveries_when_final(e2e, settings, accepted["eventId"], 1)
    assert items[0]["subject"] == "Bem-vindo, Bruno!"


async def test_smtp_refusing_then_recovering_sends_once(e2e, settings, smtp):
    smtp.refuse_next = 2
    refused_before = smtp.refused
    accepted = await send(
        e2e, settings, type="user_registered", userIds=["u-chen"], channels=["EMAIL"]
    )
    items = await deliveries_when_final(e2e, settings, accepted["eventId"], 1)
    email = items[0]
    assert email["status"] == "SENT"
    assert smtp.refused - refused_before == 2
    assert [a["error"] is None for a in email["attempts"]] == [False, False, True]
    assert len(smtp.to("chen@example.com")) == 1


async def test_unknown_user_is_skipped_with_reason(e2e, settings):
    accepted = await send(
        e2e, settings, type="user_registered", userIds=["u-nobody"], channels=["EMAIL"]
    )
    items = await deliveries_when_final(e2e, settings, accepted["eventId"], 1)
    assert items[0]["status"] == "SKIPPED"
    assert "unknown user" in items[0]["timeline"][-1]["reason"]


async def test_an_event_for_many_users_is_dispatched_in_parts_each_delivery_once(
    e2e, settings, engine
):
    # Part size 100 (worker_env): 250 users make three dispatch messages.
    known = [u["id"] for u in json.loads((Path(__file__).parent / "users.json").read_text())]
    users = known + [f"u-nobody-{i}" for i in range(250 - len(known))]
    accepted = await send(e2e, settings, type="user_registered", userIds=users, channels=["IN_APP"])
    event_id = accepted["eventId"]

    async def rows(sql: str) -> list[Any]:
        async with engine.connect() as conn:
            return list((await conn.execute(text(sql), {"e": event_id})).all())

    async def final() -> list[Any] | None:
        found = await rows("SELECT user_id, status FROM deliveries WHERE event_id = :e")
        done = [r for r in found if r.status in ("sent", "skipped", "failed", "dead")]
        return found if len(found) == len(users) and len(done) == len(users) else None

    statuses = dict(await eventually(final, timeout=30))
    assert {u for u, s in statuses.items() if s == "sent"} == set(known)
    assert {s for u, s in statuses.items() if u not in known} == {"skipped"}
    inbox = await rows("SELECT user_id FROM inbox_items WHERE event_id = :e")
    assert sorted(r.user_id for r in inbox) == sorted(known)


async def test_idempotency_key_delivers_once(e2e, settings, smtp):
    event = {
        "type": "user_registered",
        "userIds": ["u-dana"],
        "channels": ["EMAIL"],
        "idempotencyKey": f"signup-{uuid.uuid4()}",
    }
    first = await send(e2e, settings, **event)
    second = await send(e2e, settings, **event)
    assert second == {**first, "duplicate": True}
    await deliveries_when_final(e2e, settings, first["eventId"], 1)
    assert len(smtp.to("dana@example.com")) == 1


async def test_opt_out_skips_channel_but_not_critical(e2e, settings, smtp):
    emil = token_for(settings, "user", sub="u-emil")
    prefs = await e2e(
        "mutation { setPreferences(input: {disabledChannels: [EMAIL]}) { __typename "
        "... on Preferences { userId disabledChannels } } }",
        token=emil,
    )
    assert prefs["data"]["setPreferences"]["disabledChannels"] == ["EMAIL"]
    regular = await send(e2e, settings, type="user_registered", userIds=["u-emil"])
    items = await deliveries_when_final(e2e, settings, regular["eventId"], 2)
    statuses = {d["channel"]: d["status"] for d in items}
    assert statuses == {"EMAIL": "SKIPPED", "IN_APP": "SENT"}
    critical = await send(
        e2e,
        settings,
        type="password_reset",
        userIds=["u-emil"],
        payload={"reset_url": "https://example.com/r/1"},
    )
    items = await deliveries_when_final(e2e, settings, critical["eventId"], 1)
    assert items[0]["status"] == "SENT"
    assert [m["Subject"] for m in smtp.to("emil@example.com")] == ["Reset your password"]


async def test_payload_schema_error_names_the_path(e2e, settings):
    result = await send(
        e2e,
        settings,
        type="movie_added",
        userIds=["u-alice"],
        payload={"movie": {"url": "https://x"}},
    )
    assert result["__typename"] == "ValidationError"
    assert result["field"] == "payload.movie"
    assert "'title' is a required property" in result["message"]
    wrong_type = await send(
        e2e,
        settings,
        type="movie_added",
        userIds=["u-alice"],
        payload={"movie": {"title": "X", "url": "u", "year": "1999"}},
    )
    assert wrong_type["field"] == "payload.movie.year"


async def test_unregistered_type_needs_template_and_channels(e2e, settings):
    result = await send(e2e, settings, type="invoice_paid", userIds=["u-alice"])
    assert result["__typename"] == "ValidationError" and result["field"] == "type"
    ok = await send(
        e2e,
        settings,
        type="invoice_paid",
        userIds=["u-alice"],
        templateSlug="welcome",
        channels=["IN_APP"],
        payload={"any": ["thing"]},
    )
    assert ok["__typename"] == "EventAccepted"
    items = await deliveries_when_final(e2e, settings, ok["eventId"], 1)
    assert items[0]["status"] == "SENT"


async def test_permanent_failure_dead_letter_then_replay(e2e, settings, sms_provider):
    admin = token_for(settings, "admin")
    slug = f"sms-{uuid.uuid4().hex[:8]}"
    created = await e2e(
        "mutation($i: CreateTemplateInput!) { createTemplate(input: $i) { __typename } }",
        {
            "i": {
                "slug": slug,
                "name": "SMS",
                "content": [
                    {"channel": "SMS", "body": "Code {{ payload.code }} for {{ user.first_name }}"}
                ],
            }
        },
        token=token_for(settings, "manager"),
    )
    assert created["data"]["createTemplate"]["__typename"] == "Template"
    sms_provider.status = 400
    accepted = await send(
        e2e,
        settings,
        type="otp",
        userIds=["u-alice"],
        templateSlug=slug,
        channels=["SMS"],
        payload={"code": "4242"},
    )
    items = await deliveries_when_final(e2e, settings, accepted["eventId"], 1)
    assert items[0]["status"] == "FAILED"
    letters = await e2e(
        "{ deadLetters(first: 50) { edges { node { deliveryId error channel } } } }", token=admin
    )
    ids = [e["node"]["deliveryId"] for e in letters["data"]["deadLetters"]["edges"]]
    assert items[0]["id"] in ids

    sms_provider.status = 200
    replay = await e2e(
        "mutation($ids: [ID!]!) { retryDeadLetters(ids: $ids) { __typename "
        "... on DeadLettersRetried { retried notFound } } }",
        {"ids": [items[0]["id"], "not-a-dead-letter"]},
        token=admin,
    )
    assert replay["data"]["retryDeadLetters"] == {
        "__typename": "DeadLettersRetried",
        "retried": [items[0]["id"]],
        "notFound": ["not-a-dead-letter"],
    }

    async def sent() -> bool:
        body = await e2e(EVENT, {"id": accepted["eventId"]}, token=admin)
        return body["data"]["event"]["deliveries"][0]["status"] == "SENT"

    await eventually(sent)
    texts = [json.loads(r["body"])["text"] for r in sms_provider.requests]
    assert texts.count("Code 4242 for Alice") == 1


async def test_send_at_is_released_when_due(e2e, settings, beat):
    due = datetime.now(UTC) + timedelta(seconds=3)
    accepted = await send(
        e2e,
        settings,
        type="user_registered",
        userIds=["u-alice"],
        channels=["IN_APP"],
        sendAt=due.isoformat(),
    )
    assert accepted["scheduledFor"] is not None
    admin = token_for(settings, "admin")
    early = await e2e(EVENT, {"id": accepted["eventId"]}, token=admin)
    assert early["data"]["event"]["deliveries"] == []
    items = await deliveries_when_final(e2e, settings, accepted["eventId"], 1)
    assert items[0]["status"] == "SENT"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


async def test_web_push_reaches_the_browser(e2e, settings, push_service):
    browser_key = ec.generate_private_key(ec.SECP256R1())
    public = browser_key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    auth_secret = uuid.uuid4().bytes
    registered = await e2e(
        "mutation($i: PushSubscriptionInput!) { registerPushSubscription(input: $i) "
        "{ __typename } }",
        {
            "i": {
                "endpoint": f"{push_service.url}/push/{uuid.uuid4().hex}",
                "keys": {"p256dh": _b64(public), "auth": _b64(auth_secret)},
            }
        },
        token=token_for(settings, "user", sub="u-chen"),
    )
    assert registered["data"]["registerPushSubscription"]["__typename"] == "PushSubscriptionSaved"
    accepted = await send(
        e2e,
        settings,
        type="movie_added",
        userIds=["u-chen"],
        channels=["PUSH"],
        payload={"movie": {"title": "Metropolis", "url": "https://m/1"}},
    )
    items = await deliveries_when_final(e2e, settings, accepted["eventId"], 1)
    assert items[0]["status"] == "SENT"
    request = push_service.requests[-1]
    plain = http_ece.decrypt(
        request["body"], private_key=browser_key, auth_secret=auth_secret, version="aes128gcm"
    )
    assert json.loads(plain)["title"] == "New movie: Metropolis"


async def test_bulk_send_events(e2e, settings):
    inputs = [
        {"type": "user_registered", "userIds": [f"bulk-{i}"], "channels": ["IN_APP"]}
        for i in range(120)
    ]
    inputs[7] = {"type": "movie_added", "userIds": ["x"], "payload": {}}
    result = await e2e(
        "mutation($inputs: [EventInput!]!) { sendEvents(inputs: $inputs) { __typename "
        "... on EventBatch { accepted results { __typename "
        "... on EventAccepted { eventId } ... on Error { field } } } } }",
        {"inputs": inputs},
        token=token_for(settings, "service"),
    )
    batch = result["data"]["sendEvents"]
    assert batch["accepted"] == 119
    assert batch["results"][7] == {"__typename": "ValidationError", "field": "inputs[7].payload"}
    assert len({r.get("eventId") for r in batch["results"]}) == 120
    too_many = await e2e(
        "mutation($inputs: [EventInput!]!) { sendEvents(inputs: $inputs) { __typename } }",
        {"inputs": inputs * 5},
        token=token_for(settings, "service"),
    )
    assert too_many["data"]["sendEvents"]["__typename"] == "ValidationError"


async def test_a_dead_workers_deliveries_are_taken_over_once(e2e, settings, smtp):
    """A worker that died mid-send leaves deliveries in `sending`: a duplicate message does not
    touch them; the redelivered one (resume) sends each once."""
    from backend.broker import Broker
    from backend.channels import Channel
    from backend.db.history.base import DeliveryRecord, DeliveryStatus, StatusChange
    from backend.db.history.postgres import PostgresHistoryStore
    from backend.queues import CHANNEL_QUEUES, TASK_SEND
    from backend.services.deliveries import delivery_id

    event_id = str(uuid.uuid4())
    now = datetime.now(UTC)
    did = delivery_id(event_id, "u-dana", Channel.EMAIL)
    store = PostgresHistoryStore(e2e.client._transport.app.state.services.engine)
    await store.add(
        [
            DeliveryRecord(
                id=did,
                event_id=event_id,
                event_type="password_reset",
                user_id="u-dana",
                channel=Channel.EMAIL,
                created_at=now,
                updated_at=now,
                status=DeliveryStatus.SENDING,
                template_slug="password_reset",
                timeline=[
                    StatusChange(DeliveryStatus.QUEUED, now),
                    StatusChange(DeliveryStatus.SENDING, now),
                ],
            )
        ]
    )
    envelope = {
        "id": event_id,
        "type": "password_reset",
        "payload": {"reset_url": "https://r/9"},
        "template_slug": "password_reset",
        "channels": ["email"],
        "locale": None,
        "critical": True,
        "created_at": now.isoformat(),
        "send_at": None,
        "actor": "test",
        "campaign_id": None,
    }
    broker = Broker(settings.rabbitmq_url)
    await broker.start()
    before = len(smtp.to("dana@example.com"))
    try:
        kwargs = {"event": envelope, "channel": "email", "delivery_ids": [did], "attempt": 1}
        await broker.publish_task(
            CHANNEL_QUEUES[Channel.EMAIL], TASK_SEND, kwargs={**kwargs, "resume": False}
        )
        await asyncio.sleep(2)
        assert (await store.get(did)).status is DeliveryStatus.SENDING
        for _ in range(2):  # the redelivery, and a duplicate of it
            await broker.publish_task(
                CHANNEL_QUEUES[Channel.EMAIL], TASK_SEND, kwargs={**kwargs, "resume": True}
            )
    finally:
        await broker.close()

    async def sent() -> bool:
        record = await store.get(did)
        return record is not None and record.status is DeliveryStatus.SENT

    await eventually(sent)
    await asyncio.sleep(1)
    assert len(smtp.to("dana@example.com")) - before == 1


async def test_bulk_send_events_with_idempotency_keys(e2e, settings):
    """A key claimed earlier, a key repeated within the batch, and no key at all: each event
    gets the answer it would get sent on its own, in input order."""
    token = token_for(settings, "service")
    query = (
        "mutation($inputs: [EventInput!]!) { sendEvents(inputs: $inputs) { "
        "... on EventBatch { accepted results { ... on EventAccepted { eventId duplicate } } } } }"
    )
    first_key, batch_key = f"bulk-key-{uuid.uuid4()}", f"bulk-key-{uuid.uuid4()}"

    def event(n: int, key: str | None) -> dict[str, object]:
        return {
            "type": "user_registered",
            "userIds": [f"bulk-key-user-{n}"],
            "channels": ["IN_APP"],
            "idempotencyKey": key,
        }

    earlier = await e2e(query, {"inputs": [event(0, first_key)]}, token=token)
    earlier_id = earlier["data"]["sendEvents"]["results"][0]["eventId"]
    result = await e2e(
        query,
        {"inputs": [event(1, batch_key), event(2, first_key), event(3, None), event(4, batch_key)]},
        token=token,
    )
    batch = result["data"]["sendEvents"]
    results = batch["results"]
    assert batch["accepted"] == 4
    assert [r["duplicate"] for r in results] == [False, True, False, True]
    assert results[1]["eventId"] == earlier_id
    assert results[3]["eventId"] == results[0]["eventId"]
    assert results[2]["eventId"] not in (earlier_id, results[0]["eventId"])


def test_a_second_worker_on_the_same_host_starts_beside_the_first(worker, worker_env):
    # Named celery@<host>, as Celery names a worker unless told otherwise, the second could
    # not declare the remote-control queue the first one's connection holds exclusively
    # (RESOURCE_LOCKED) and exited at start.
    second = Process(["worker", "--concurrency", "1"], worker_env, ready="ready.")
    try:
        assert second.process.poll() is None
        assert worker.process.poll() is None
    finally:
        second.stop()
