"""Status webhooks with a real worker and a real receiving HTTP server: registration over
GraphQL, Standard Webhooks signatures checked with the standardwebhooks libraries (PyPI and
npm), the deprecated signature header, per-delivery sequence numbers, filters, retries with
backoff, and the queryable delivery log."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import importlib
import json
import time
import uuid
from datetime import datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from standardwebhooks import Webhook, WebhookVerificationError

from backend.channels.outbound import sign, signing_key, verify_legacy_signature
from tests.conftest import GraphQL, schema_differences
from tests.factories import token_for
from tests.orchestration.conftest import HttpEndpoint, Register, Smtp
from tests.orchestration.helpers import (
    CREATE,
    DELETE,
    ENDPOINT_FIELDS,
    admin,
    final_deliveries,
    send,
)
from tests.pipeline.servers import eventually

NODE_VERIFIER = Path(__file__).parents[1] / "standard_webhooks" / "verify.mjs"
UPDATE = (
    "mutation($id: ID!, $input: WebhookEndpointPatch!) { updateWebhookEndpoint(id: $id, "
    "input: $input) { " + ENDPOINT_FIELDS + " } }"
)
LOG = """query($id: ID!, $first: Int!, $after: String) {
  webhookDeliveries(endpointId: $id, first: $first, after: $after) {
    edges { cursor node { messageId attempt succeeded responseStatus error updateCount
      nextRetryAt attemptedAt } }
    pageInfo { hasNextPage endCursor } } }"""


def changes(request: dict[str, Any], event_id: str) -> list[dict[str, Any]]:
    return [u for u in json.loads(request["body"])["data"] if u["event_id"] == event_id]


async def test_status_changes_are_posted_signed_and_filtered(
    api: GraphQL, receiver: HttpEndpoint, register: Register
) -> None:
    # A passphrase, as endpoints had before Standard Webhooks: shown in the whsec_ form of the
    # same key, and still checked by the deprecated header for an endpoint that keeps it.
    passphrase = "whsec_test_" + "s" * 20
    sent_only = await register(
        secret=passphrase,
        statuses=["SENT"],
        eventTypes=["user_registered"],
        description="CRM",
        legacySignature=True,
    )
    everything = await register()
    other_type = await register(eventTypes=["movie_added"])
    inactive = await register(active=False)
    assert sent_only["secret"] == "whsec_" + base64.b64encode(passphrase.encode()).decode()
    assert sent_only["statuses"] == ["SENT"] and sent_only["legacySignature"] is True
    assert everything["legacySignature"] is False  # new endpoints: Standard Webhooks only
    assert everything["engagements"] == []  # opens and clicks only when asked for
    assert everything["secret"].startswith("whsec_")
    assert len(base64.b64decode(everything["secret"].removeprefix("whsec_"))) == 32

    event_id = await send(api, type="user_registered", userIds=["u-alice"])
    await final_deliveries(api, event_id, 2)

    async def both_sent() -> list[dict[str, Any]]:
        got = [u for r in receiver.received(sent_only["path"]) for u in changes(r, event_id)]
        return got if len(got) == 2 else []

    updates = await eventually(both_sent)
    assert {(u["channel"], u["status"]) for u in updates} == {("email", "sent"), ("in_app", "sent")}
    assert {u["user_id"] for u in updates} == {"u-alice"}

    # The unfiltered endpoint saw every step: queued, sending and sent.
    async def all_steps() -> set[str]:
        seen = {
            u["status"] for r in receiver.received(everything["path"]) for u in changes(r, event_id)
        }
        return seen if {"queued", "sending", "sent"} <= seen else set()

    await eventually(all_steps)

    request = receiver.received(sent_only["path"])[0]
    body, headers = request["body"], request["headers"]
    document = json.loads(body)
    assert document["type"] == "delivery.status_changed"
    assert headers["webhook-id"] == headers["herald-webhook-id"] == document["id"]
    assert headers["herald-webhook-attempt"] == "1"
    assert headers["content-type"] == "application/json"
    # webhook-signature: v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">, by hand...
    timestamp = headers["webhook-timestamp"]
    assert abs(int(timestamp) - time.time()) < 60
    signed = f"{document['id']}.{timestamp}.".encode() + body
    expected = hmac.new(passphrase.encode(), signed, hashlib.sha256).digest()
    assert headers["webhook-signature"] == "v1," + base64.b64encode(expected).decode()
    # ...and with the library, keyed with the whsec_ form.
    assert Webhook(sent_only["secret"]).verify(body, headers) == document
    # The deprecated header: t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<body>">, the same key.
    legacy = dict(part.split("=", 1) for part in headers["herald-signature"].split(","))
    assert legacy["t"] == timestamp
    digest = hmac.new(passphrase.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    assert hmac.compare_digest(legacy["v1"], digest.hexdigest())
    # The helper a receiver of that header can copy takes either form of the secret and
    # refuses a wrong secret or a change.
    assert verify_legacy_signature(passphrase, headers["herald-signature"], body)
    assert verify_legacy_signature(sent_only["secret"], headers["herald-signature"], body)
    assert not verify_legacy_signature("whsec_wrong_secret_0000", headers["herald-signature"], body)
    assert not verify_legacy_signature(passphrase, headers["herald-signature"], body + b" ")

    plain = receiver.received(everything["path"])[0]["headers"]
    assert "herald-signature" not in plain and "herald-webhook-id" not in plain
    assert receiver.received(other_type["path"]) == []
    assert receiver.received(inactive["path"]) == []


def _replayed(request: dict[str, Any], secret: str, age: int) -> dict[str, Any]:
    """``request`` as a replay ``age`` seconds after it was sent would carry it: the same body,
    id and signature scheme, validly signed for a timestamp that is ``age`` seconds old."""
    headers = dict(request["headers"])
    timestamp = int(time.time()) - age
    headers["webhook-timestamp"] = str(timestamp)
    headers["webhook-signature"] = sign(
        signing_key(secret), request["body"], message_id=headers["webhook-id"], timestamp=timestamp
    )
    return {**request, "headers": headers}


async def _node_verify(secret: str, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each request checked by the standardwebhooks npm package (tests/standard_webhooks)."""
    document = {
        "secret": secret,
        "requests": [
            {"headers": r["headers"], "body": base64.b64encode(r["body"]).decode()}
            for r in requests
        ],
    }
    process = await asyncio.create_subprocess_exec(
        "node",
        str(NODE_VERIFIER),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(json.dumps(document).encode()), 30)
    assert process.returncode == 0, err.decode()
    results: list[dict[str, Any]] = json.loads(out)
    return results


async def test_requests_verify_with_the_standard_webhooks_libraries(
    api: GraphQL, receiver: HttpEndpoint, register: Register
) -> None:
    endpoint = await register(statuses=["SENT"], eventTypes=["user_registered"])
    other = await register(statuses=["SENT"], eventTypes=["user_registered"])
    event_id = await send(api, type="user_registered", userIds=["u-dana"], channels=["EMAIL"])

    async def posted() -> list[dict[str, Any]]:
        return [r for r in receiver.received(endpoint["path"]) if changes(r, event_id)]

    request = (await eventually(posted))[0]
    document = json.loads(request["body"])
    tampered = {**request, "body": request["body"].replace(b'"sent"', b'"dead"')}
    assert tampered["body"] != request["body"]
    fresh = _replayed(request, endpoint["secret"], age=0)
    old = _replayed(request, endpoint["secret"], age=600)

    # Python (PyPI standardwebhooks).
    webhook = Webhook(endpoint["secret"])
    assert webhook.verify(request["body"], request["headers"]) == document
    assert webhook.verify(fresh["body"], fresh["headers"]) == document
    with pytest.raises(WebhookVerificationError, match="No matching signature"):
        webhook.verify(tampered["body"], tampered["headers"])
    with pytest.raises(WebhookVerificationError, match="too old"):
        webhook.verify(old["body"], old["headers"])
    with pytest.raises(WebhookVerificationError, match="No matching signature"):
        Webhook(other["secret"]).verify(request["body"], request["headers"])

    # Node (npm standardwebhooks): the same answers.
    results = await _node_verify(endpoint["secret"], [request, fresh, tampered, old])
    assert results[0] == {"verified": True, "payload": document}
    assert results[1] == {"verified": True, "payload": document}
    assert results[2] == {
        "verified": False,
        "error": "WebhookVerificationError: No matching signature found",
    }
    assert results[3] == {
        "verified": False,
        "error": "WebhookVerificationError: Message timestamp too old",
    }
    wrong = await _node_verify(other["secret"], [request])
    assert wrong[0]["verified"] is False


async def test_a_delivery_s_changes_are_numbered_and_the_highest_is_the_final_status(
    api: GraphQL, receiver: HttpEndpoint, register: Register
) -> None:
    endpoint = await register(eventTypes=["user_registered"])
    # The first POST fails and comes again after the backoff, most likely after a later one.
    receiver.fail_next[endpoint["path"]] = 1

    event_id = await send(
        api, type="user_registered", userIds=["u-emil", "u-bruno"], channels=["EMAIL", "IN_APP"]
    )
    deliveries = await final_deliveries(api, event_id, 4)

    async def every_change() -> list[dict[str, Any]]:
        delivered = [r for r in receiver.received(endpoint["path"]) if r["answered"] == 204]
        got = [u for r in delivered for u in changes(r, event_id)]
        expected = sum(len(d["timeline"]) for d in deliveries)
        return delivered if len(got) == expected else []

    delivered = await eventually(every_change)
    arrived: list[dict[str, Any]] = []
    for request in delivered:
        data = changes(request, event_id)
        # In one message: by delivery, each delivery's changes in sequence order.
        assert data == sorted(data, key=lambda u: (u["id"], u["sequence"])), data
        arrived.extend(data)

    latest: dict[str, dict[str, Any]] = {}  # what a receiver keeping the highest holds
    for update in arrived:
        if update["sequence"] > latest.get(update["id"], {"sequence": 0})["sequence"]:
            latest[update["id"]] = update
    for delivery in deliveries:
        mine = sorted(
            (u for u in arrived if u["id"] == delivery["id"]), key=lambda u: u["sequence"]
        )
        # Numbered 1, 2, 3...: the delivery's timeline in the history store, in order.
        assert [u["sequence"] for u in mine] == list(range(1, len(delivery["timeline"]) + 1))
        assert [u["status"].upper() for u in mine] == [t["status"] for t in delivery["timeline"]]
        assert latest[delivery["id"]]["status"].upper() == delivery["status"] == "SENT"


async def test_a_retried_delivery_goes_on_counting_where_it_was(
    api: GraphQL, receiver: HttpEndpoint, register: Register, relay_a: Smtp, relay_b: Smtp
) -> None:
    endpoint = await register(eventTypes=["user_registered"])
    relay_a.sink.refuse_next = relay_b.sink.refuse_next = 1  # both relays: 451, once

    event_id = await send(api, type="user_registered", userIds=["u-chen"], channels=["EMAIL"])
    [delivery] = await final_deliveries(api, event_id, 1)
    statuses = [t["status"] for t in delivery["timeline"]]
    # Queued again for a retry, which another task sent: 6 changes.
    assert statuses == ["QUEUED", "SENDING", "SENDING", "QUEUED", "SENDING", "SENT"], statuses

    # The relay that failed over (the second SENDING) is in the timeline but not announced;
    # every other change is, numbered by its place in the timeline.
    announced = [1, 2, 4, 5, 6]

    async def every_change() -> list[dict[str, Any]]:
        got = [u for r in receiver.received(endpoint["path"]) for u in changes(r, event_id)]
        return got if len(got) == len(announced) else []

    arrived = sorted(await eventually(every_change), key=lambda u: u["sequence"])
    assert [u["sequence"] for u in arrived] == announced
    assert [u["status"].upper() for u in arrived] == [statuses[n - 1] for n in announced]


async def test_failed_posts_are_retried_with_backoff_and_every_attempt_is_logged(
    api: GraphQL, receiver: HttpEndpoint, register: Register
) -> None:
    endpoint = await register(statuses=["SENT"], eventTypes=["user_registered"])
    receiver.fail_next[endpoint["path"]] = 2  # 500, 500, then 204

    event_id = await send(api, type="user_registered", userIds=["u-bruno"], channels=["EMAIL"])
    await final_deliveries(api, event_id, 1)

    async def delivered() -> list[dict[str, Any]]:
        answered = [r["answered"] for r in receiver.received(endpoint["path"])]
        return receiver.received(endpoint["path"]) if 204 in answered else []

    requests = await eventually(delivered)
    assert [r["answered"] for r in requests] == [500, 500, 204]
    assert [r["headers"]["herald-webhook-attempt"] for r in requests] == ["1", "2", "3"]
    assert len({r["headers"]["webhook-id"] for r in requests}) == 1
    assert len({r["body"] for r in requests}) == 1  # the same bytes every time
    # Each attempt is signed anew, at its own time, and verifies.
    webhook = Webhook(endpoint["secret"])
    assert all(webhook.verify(r["body"], r["headers"]) for r in requests)

    async def logged() -> list[dict[str, Any]]:
        body = await api(LOG, {"id": endpoint["id"], "first": 10}, token=admin(api.settings))
        edges = body["data"]["webhookDeliveries"]["edges"]
        return [e["node"] for e in edges] if len(edges) == 3 else []

    log = await eventually(logged)
    assert [(n["attempt"], n["succeeded"], n["responseStatus"]) for n in log] == [
        (3, True, 204),
        (2, False, 500),
        (1, False, 500),
    ]
    assert log[0]["nextRetryAt"] is None and log[0]["error"] is None
    assert all(n["nextRetryAt"] for n in log[1:])
    assert log[2]["error"] == "the endpoint answered 500"
    assert {n["updateCount"] for n in log} == {1}
    # Backoff: base 0.5 s doubling (capped at 1 s), times 0.5-1.0.
    times = [datetime.fromisoformat(n["attemptedAt"]) for n in reversed(log)]
    gaps = [(b - a).total_seconds() for a, b in pairwise(times)]
    assert gaps[0] >= 0.25 and gaps[1] >= 0.5, gaps

    # Paging: two, then the rest.
    page = await api(LOG, {"id": endpoint["id"], "first": 2}, token=admin(api.settings))
    first = page["data"]["webhookDeliveries"]
    assert [e["node"]["attempt"] for e in first["edges"]] == [3, 2]
    assert first["pageInfo"]["hasNextPage"] is True
    rest = await api(
        LOG,
        {"id": endpoint["id"], "first": 2, "after": first["pageInfo"]["endCursor"]},
        token=admin(api.settings),
    )
    assert [e["node"]["attempt"] for e in rest["data"]["webhookDeliveries"]["edges"]] == [1]


async def test_an_endpoint_that_never_answers_gives_up_after_the_last_attempt(
    api: GraphQL, register: Register
) -> None:
    endpoint = await register(statuses=["SENT"], eventTypes=["user_registered"])
    # Nothing listens there: connection refused, every time.
    closed = "http://127.0.0.1:9/hook"
    body = await api(
        UPDATE, {"id": endpoint["id"], "input": {"url": closed}}, token=admin(api.settings)
    )
    assert body["data"]["updateWebhookEndpoint"]["url"] == closed
    assert body["data"]["updateWebhookEndpoint"]["statuses"] == ["SENT"]  # kept

    event_id = await send(api, type="user_registered", userIds=["u-chen"], channels=["EMAIL"])
    await final_deliveries(api, event_id, 1)

    async def gave_up() -> list[dict[str, Any]]:
        body = await api(LOG, {"id": endpoint["id"], "first": 10}, token=admin(api.settings))
        nodes = [e["node"] for e in body["data"]["webhookDeliveries"]["edges"]]
        return nodes if len(nodes) >= 4 else []

    log = await eventually(gave_up, timeout=30)
    assert [n["attempt"] for n in log] == [4, 3, 2, 1]  # HERALD_WEBHOOK_MAX_ATTEMPTS
    assert not any(n["succeeded"] for n in log)
    assert log[0]["nextRetryAt"] is None
    assert all("cannot reach" in n["error"] for n in log)


async def test_endpoint_management_is_validated_and_for_admins_only(
    api: GraphQL, register: Register
) -> None:
    manager = token_for(api.settings, "manager")
    denied = await api(CREATE, {"input": {"url": "https://example.com/h"}}, token=manager)
    assert denied["data"]["createWebhookEndpoint"]["code"] == "FORBIDDEN"
    listing = await api("{ webhookEndpoints { id } }", token=manager)
    assert listing["errors"][0]["extensions"]["code"] == "FORBIDDEN"

    for url in ("ftp://example.com/h", "not a url", "https://"):
        bad = await api(CREATE, {"input": {"url": url}}, token=admin(api.settings))
        assert bad["data"]["createWebhookEndpoint"] == {
            "__typename": "ValidationError",
            "code": "VALIDATION",
            "message": "The URL must be an absolute https or http URL",
            "field": "url",
        }
    short = await api(
        CREATE,
        {"input": {"url": "https://example.com/h", "secret": "short"}},
        token=admin(api.settings),
    )
    assert short["data"]["createWebhookEndpoint"]["field"] == "secret"

    endpoint = await register(description="to delete")
    listing = await api("{ webhookEndpoints { id description } }", token=admin(api.settings))
    assert {"id": endpoint["id"], "description": "to delete"} in listing["data"]["webhookEndpoints"]
    off = await api(
        UPDATE, {"id": endpoint["id"], "input": {"active": False}}, token=admin(api.settings)
    )
    assert off["data"]["updateWebhookEndpoint"]["active"] is False
    assert off["data"]["updateWebhookEndpoint"]["description"] == "to delete"
    legacy = await api(
        UPDATE,
        {"id": endpoint["id"], "input": {"legacySignature": True}},
        token=admin(api.settings),
    )
    assert legacy["data"]["updateWebhookEndpoint"]["legacySignature"] is True
    assert legacy["data"]["updateWebhookEndpoint"]["active"] is False  # kept
    for secret, message in (
        ("whsec_" + base64.b64encode(b"k" * 16).decode(), "24 to 64 bytes"),
        ("whsec_" + base64.b64encode(b"k" * 65).decode(), "24 to 64 bytes"),
        ("s" * 201, "16 to 200 characters"),
    ):
        refused = await api(
            UPDATE, {"id": endpoint["id"], "input": {"secret": secret}}, token=admin(api.settings)
        )
        assert message in refused["data"]["updateWebhookEndpoint"]["message"]
    key = base64.b64encode(bytes(range(40))).decode()
    kept = await api(
        UPDATE,
        {"id": endpoint["id"], "input": {"secret": f"whsec_{key}"}},
        token=admin(api.settings),
    )
    assert kept["data"]["updateWebhookEndpoint"]["secret"] == f"whsec_{key}"

    deleted = await api(DELETE, {"id": endpoint["id"]}, token=admin(api.settings))
    assert deleted["data"]["deleteWebhookEndpoint"] == {
        "__typename": "WebhookEndpointDeleted",
        "id": endpoint["id"],
    }
    again = await api(DELETE, {"id": endpoint["id"]}, token=admin(api.settings))
    assert again["data"]["deleteWebhookEndpoint"]["code"] == "NOT_FOUND"
    missing = await api(LOG, {"id": str(uuid.uuid4()), "first": 5}, token=admin(api.settings))
    assert missing["errors"][0]["extensions"]["code"] == "NOT_FOUND"


async def test_the_migration_creates_the_tables_of_the_models(engine: AsyncEngine) -> None:
    tables = {"webhook_endpoints", "webhook_deliveries"}
    assert await schema_differences(engine, tables) == []


async def test_the_migration_gives_existing_secrets_the_whsec_form_of_the_same_key(
    engine: AsyncEngine,
) -> None:
    migration = importlib.import_module("backend.db.migrations.versions.0009_standard_webhooks")
    former = [
        "whsec_" + "Ab-_" * 10 + "xyz",  # as Herald generated them: URL-safe, not base64
        "a passphrase of 16+",
        "é€" * 100,  # 200 characters, 500 UTF-8 bytes: the base64 spans several lines
    ]
    query = text(
        f"SELECT {migration.WHSEC_OF_SECRET} FROM (VALUES (:secret)) AS webhook_endpoints(secret)"
    )
    async with engine.connect() as conn:
        for secret in former:
            converted = (await conn.execute(query, {"secret": secret})).scalar_one()
            assert converted == "whsec_" + base64.b64encode(secret.encode()).decode()
            # The key the former header was made with, and what the libraries decode.
            assert signing_key(converted) == secret.encode()
            assert base64.b64decode(converted.removeprefix("whsec_")) == secret.encode()
