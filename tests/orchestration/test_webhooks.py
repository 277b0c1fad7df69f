"""Status webhooks with a real worker and a real receiving HTTP server: registration over
GraphQL, signed POSTs, filters, retries with backoff, and the queryable delivery log."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from itertools import pairwise
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.services.webhooks import verify_signature
from tests.conftest import GraphQL
from tests.factories import token_for
from tests.orchestration.conftest import HttpEndpoint
from tests.orchestration.helpers import admin, final_deliveries, reset_preferences, send
from tests.pipeline.servers import eventually

ENDPOINT_FIELDS = """__typename
  ... on WebhookEndpoint { id url secret description eventTypes statuses active createdBy }
  ... on Error { code message field }"""
CREATE = (
    "mutation($input: WebhookEndpointInput!) { createWebhookEndpoint(input: $input) { "
    + ENDPOINT_FIELDS
    + " } }"
)
UPDATE = (
    "mutation($id: ID!, $input: WebhookEndpointPatch!) { updateWebhookEndpoint(id: $id, "
    "input: $input) { " + ENDPOINT_FIELDS + " } }"
)
DELETE = """mutation($id: ID!) { deleteWebhookEndpoint(id: $id) { __typename
  ... on WebhookEndpointDeleted { id } ... on Error { code message field } } }"""
LOG = """query($id: ID!, $first: Int!, $after: String) {
  webhookDeliveries(endpointId: $id, first: $first, after: $after) {
    edges { cursor node { messageId attempt succeeded responseStatus error updateCount
      nextRetryAt attemptedAt } }
    pageInfo { hasNextPage endCursor } } }"""

Register = Callable[..., Awaitable[dict[str, Any]]]


@pytest.fixture
async def register(api: GraphQL, receiver: HttpEndpoint) -> AsyncIterator[Register]:
    """Registers endpoints on the receiver (one path each) and deletes them after the test:
    the database is shared with other suites' workers."""
    created: list[str] = []

    async def make(**fields: Any) -> dict[str, Any]:
        path = f"/hooks/{uuid.uuid4().hex[:8]}"
        data = {"url": f"{receiver.url}{path}", **fields}
        body = await api(CREATE, {"input": data}, token=admin(api.settings))
        endpoint = body["data"]["createWebhookEndpoint"]
        assert endpoint["__typename"] == "WebhookEndpoint", body
        created.append(endpoint["id"])
        # Workers read the active endpoints at most every HERALD_WEBHOOK_CACHE_SECONDS (0.2 s
        # in this suite): a change announced sooner may go by the list read before this one.
        await asyncio.sleep(0.3)
        return {**endpoint, "path": path}

    yield make
    for endpoint_id in created:
        await api(DELETE, {"id": endpoint_id}, token=admin(api.settings))


def changes(request: dict[str, Any], event_id: str) -> list[dict[str, Any]]:
    return [u for u in json.loads(request["body"])["data"] if u["event_id"] == event_id]


async def test_status_changes_are_posted_signed_and_filtered(
    api: GraphQL, receiver: HttpEndpoint, register: Register
) -> None:
    await reset_preferences(api, "u-alice")
    secret = "whsec_test_" + "s" * 20
    sent_only = await register(
        secret=secret, statuses=["SENT"], eventTypes=["user_registered"], description="CRM"
    )
    everything = await register()
    other_type = await register(eventTypes=["movie_added"])
    inactive = await register(active=False)
    assert sent_only["secret"] == secret and sent_only["statuses"] == ["SENT"]
    assert everything["secret"].startswith("whsec_") and len(everything["secret"]) > 30

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
    assert headers["herald-webhook-id"] == document["id"]
    assert headers["herald-webhook-attempt"] == "1"
    assert headers["content-type"] == "application/json"
    # Herald-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<body>">, checked by hand...
    signature = dict(part.split("=", 1) for part in headers["herald-signature"].split(","))
    assert abs(int(signature["t"]) - time.time()) < 60
    expected = hmac.new(secret.encode(), f"{signature['t']}.".encode() + body, hashlib.sha256)
    assert hmac.compare_digest(signature["v1"], expected.hexdigest())
    # ...and with the helper a receiver can copy, which refuses a wrong secret or a change.
    assert verify_signature(secret, headers["herald-signature"], body)
    assert not verify_signature("whsec_wrong_secret_000000", headers["herald-signature"], body)
    assert not verify_signature(secret, headers["herald-signature"], body + b" ")

    assert receiver.received(other_type["path"]) == []
    assert receiver.received(inactive["path"]) == []


async def test_failed_posts_are_retried_with_backoff_and_every_attempt_is_logged(
    api: GraphQL, receiver: HttpEndpoint, register: Register
) -> None:
    await reset_preferences(api, "u-bruno")
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
    assert len({r["headers"]["herald-webhook-id"] for r in requests}) == 1
    assert len({r["body"] for r in requests}) == 1  # the same bytes every time

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
    await reset_preferences(api, "u-chen")
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
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from backend.db.models import Base

    def compare(connection: Any) -> list[Any]:
        context = MigrationContext.configure(
            connection,
            opts={
                "compare_type": True,
                "include_object": lambda obj, name, type_, reflected, other: (
                    getattr(obj if type_ == "table" else getattr(obj, "table", None), "name", None)
                    in {"webhook_endpoints", "webhook_deliveries"}
                ),
            },
        )
        return list(compare_metadata(context, Base.metadata))

    async with engine.connect() as conn:
        differences = await conn.run_sync(compare)

    assert differences == []
