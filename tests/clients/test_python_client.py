"""The typed Python client (clients/python): generated from schema.graphql and current with it,
and used against a live ``herald api`` the way a service would: templates, events (each with an
idempotency key unless given one), campaigns, and retries on RATE_LIMITED and UNAVAILABLE."""

from __future__ import annotations

import filecmp
import json
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from herald_client import HeraldClient, HeraldSyncClient, aio, sync

from tests.clients.conftest import service_token
from tests.processes import ThreadedServer

CLIENT = Path(__file__).resolve().parents[2] / "clients" / "python"


def test_the_generated_client_is_current_with_the_schema(tmp_path: Path) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("generate", CLIENT / "codegen" / "generate.py")
    assert spec is not None and spec.loader is not None
    generate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generate)
    generate.generate(tmp_path)
    for kind in ("aio", "sync"):
        fresh, committed = tmp_path / kind, CLIENT / "herald_client" / kind
        names = sorted(p.name for p in fresh.glob("*.py"))
        assert names == sorted(p.name for p in committed.glob("*.py")), "run `make clients`"
        _, differ, _ = filecmp.cmpfiles(fresh, committed, names, shallow=False)
        assert differ == [], f"stale against schema.graphql: {differ}; run `make clients`"


class Requests:
    """The JSON bodies a client sent, through httpx's event hooks."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []

    def record(self, request: httpx.Request) -> None:
        self.bodies.append(json.loads(request.content))

    async def arecord(self, request: httpx.Request) -> None:
        self.record(request)


def slug() -> str:
    return f"client-{uuid.uuid4().hex[:8]}"


def in_app_template(client: Any, slug: str, name: str, title: str, body: str) -> Any:
    """The input creating an in-app template, in the types of ``client`` (aio or sync)."""
    content = client.TemplateContentInput(channel=client.Channel.IN_APP, title=title, body=body)
    return client.CreateTemplateInput(slug=slug, name=name, content=[content])


async def test_the_async_client_sends_events_with_keys_and_waits_out_the_rate_limit(api):
    sent = Requests()
    http = httpx.AsyncClient(timeout=10, event_hooks={"request": [sent.arecord]})
    async with HeraldClient(api.url, token=service_token(), http_client=http) as herald:
        template = slug()
        created = await herald.create_template(
            in_app_template(aio, template, "Welcome", "Hi", "Hello {{ user.first_name }}")
        )
        assert isinstance(created.create_template, aio.CreateTemplateCreateTemplateTemplate)
        assert created.create_template.variables == ["user.first_name"]

        event = aio.EventInput(
            type="client_test",
            user_ids=["u-1"],
            template_slug=template,
            channels=[aio.Channel.IN_APP],
        )
        started = time.monotonic()
        results = [await herald.send_event(event) for _ in range(3)]
        waited = time.monotonic() - started

    accepted = [r.send_event for r in results]
    assert all(isinstance(a, aio.SendEventSendEventEventAccepted) for a in accepted), accepted
    # Three events, not one sent three times: each got its own key.
    assert len({a.event_id for a in accepted}) == 3  # type: ignore[union-attr]
    sends = [b for b in sent.bodies if b["operationName"] == "SendEvent"]
    keys = [b["variables"]["input"]["idempotencyKey"] for b in sends]
    assert all(keys) and len(set(keys)) == 3, keys
    # The third was refused once (RATE_LIMITED) and sent again, with the same key, after the
    # retryAfterSeconds Herald gave (about half a second).
    assert len(sends) == 4 and keys[2] == keys[3], keys
    assert waited >= 0.3


async def test_a_given_idempotency_key_is_kept_and_herald_reports_the_duplicate(api):
    async with HeraldClient(api.url, token=service_token()) as herald:
        missing = await herald.send_event(
            aio.EventInput(
                type="client_test",
                user_ids=["u-2"],
                template_slug=slug(),
                channels=[aio.Channel.IN_APP],
            )
        )
        template = slug()
        await herald.create_template(in_app_template(aio, template, "Order", "Order", "Paid"))
        event = aio.EventInput(
            type="client_test",
            user_ids=["u-2"],
            template_slug=template,
            channels=[aio.Channel.IN_APP],
            idempotency_key=f"order-{uuid.uuid4().hex}",
        )
        first, again = [(await herald.send_event(event)).send_event for _ in range(2)]
    # No such template: a typed error in the result, not an exception.
    assert isinstance(missing.send_event, aio.SendEventSendEventNotFoundError)
    assert missing.send_event.code == aio.ErrorCode.NOT_FOUND
    assert isinstance(first, aio.SendEventSendEventEventAccepted) and not first.duplicate
    assert isinstance(again, aio.SendEventSendEventEventAccepted) and again.duplicate
    assert again.event_id == first.event_id


def test_the_sync_client_creates_and_cancels_a_campaign(api):
    with HeraldSyncClient(api.url, token=lambda: service_token()) as herald:
        template = slug()
        herald.create_template(in_app_template(sync, template, "News", "News", "Hi"))
        created = herald.create_campaign(
            sync.CampaignInput(
                name="Client test",
                template_slug=template,
                channels=[sync.Channel.IN_APP],
                audience=sync.AudienceInput(user_ids=["u-1", "u-2"]),
                draft=True,
            )
        ).create_campaign
        assert isinstance(created, sync.CreateCampaignCreateCampaignCampaign), created
        assert created.status == sync.CampaignStatus.DRAFT
        fetched = herald.get_campaign(created.id).campaign
        assert fetched is not None and fetched.template_slug == template
        cancelled = herald.cancel_campaign(created.id).cancel_campaign
        assert isinstance(cancelled, sync.CancelCampaignCancelCampaignCampaign), cancelled
        assert cancelled.status == sync.CampaignStatus.CANCELLED


UNAVAILABLE = {
    "data": {
        "sendEvent": {
            "__typename": "UnavailableError",
            "code": "UNAVAILABLE",
            "message": "The event broker is unavailable; retry shortly",
            "field": None,
        }
    }
}
ACCEPTED = {
    "data": {
        "sendEvent": {
            "__typename": "EventAccepted",
            "eventId": "ev-1",
            "duplicate": False,
            "scheduledFor": None,
        }
    }
}


class Flaky:
    """An HTTP server standing in for Herald while its broker is down: UNAVAILABLE, then a 503
    from a proxy, then the event accepted."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.bodies.append(json.loads(body))
        status, answer = [(200, UNAVAILABLE), (503, {"error": "upstream"}), (200, ACCEPTED)][
            min(len(self.bodies), 3) - 1
        ]
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": json.dumps(answer).encode()})


@pytest.mark.parametrize("kind", ["async", "sync"])
async def test_unavailable_and_a_proxy_s_503_are_retried_with_the_same_key(kind: str) -> None:
    flaky = Flaky()
    with ThreadedServer(flaky) as server:
        event = aio.EventInput(type="t", user_ids=["u"])
        if kind == "async":
            async with HeraldClient(server.url, token="t", backoff_base=0.05) as herald:
                result = (await herald.send_event(event)).send_event
        else:
            with HeraldSyncClient(server.url, token="t", backoff_base=0.05) as blocking:
                result = blocking.send_event(sync.EventInput(type="t", user_ids=["u"])).send_event
    assert result.typename__ == "EventAccepted"
    keys = {b["variables"]["input"]["idempotencyKey"] for b in flaky.bodies}
    assert len(flaky.bodies) == 3 and len(keys) == 1 and None not in keys


async def test_retries_stop_at_max_attempts_and_return_the_typed_error() -> None:
    flaky = Flaky()
    with ThreadedServer(flaky) as server:
        async with HeraldClient(server.url, token="t", max_attempts=1) as herald:
            result = (await herald.send_event(aio.EventInput(type="t", user_ids=["u"]))).send_event
    assert len(flaky.bodies) == 1
    assert isinstance(result, aio.SendEventSendEventUnavailableError)
