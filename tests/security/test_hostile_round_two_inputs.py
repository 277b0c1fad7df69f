"""Hostile input, round two: payload schemas that fetch URLs or backtrack for seconds, payloads
nested hundreds deep, crons that never occur, tokens whose ``exp`` no calendar holds, and
the low ones (malformed event ids, ``localtime``, a zero heartbeat, webhooks aimed inside).

Each sends the attack and asserts the typed refusal; those that could stall the API also
assert that ``/healthz``, asked all along from another connection, answered within 100 ms
(``tests/security/health_watch.py``)."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import jwt
import pytest
from websockets.exceptions import ConnectionClosed

from backend.config import Settings
from backend.db.models import EventType, WebhookEndpoint
from backend.services import digests, webhooks
from tests.conftest import LiveServer, app_client, free_port
from tests.factories import CREATE_TEMPLATE, template_input, token_for
from tests.graphql_ws import connect, init, receive, subscribe
from tests.security.conftest import security_settings
from tests.security.health_watch import while_probing

SECRET = "test-secret-for-the-suite-0123456789abcdef"

REGISTER = """
mutation($input: RegisterEventTypeInput!) {
  registerEventType(input: $input) { __typename ... on Error { code message field } }
}
"""
SEND = """
mutation($input: EventInput!) {
  sendEvent(input: $input) { __typename ... on Error { code message field } }
}
"""
CREATE_CAMPAIGN = """
mutation($input: CampaignInput!) {
  createCampaign(input: $input) { __typename ... on Error { code message field } }
}
"""


def _nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth):
        value = {"a": value}
    return value


class Recorder:
    """A real HTTP server on 127.0.0.1 that records every request it gets."""

    def __init__(self) -> None:
        self.hits: list[str] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                recorder.hits.append(self.path)
                body = b'{"type": "string"}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer

            def log_message(self, *args: Any) -> None:
                pass

        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    r = Recorder()
    r.thread.start()
    yield r
    r.server.shutdown()
    r.server.server_close()


class Live:
    """GraphQL on a real ``herald api`` process (its writes commit: names are unique)."""

    def __init__(self, server: LiveServer, client: httpx.AsyncClient) -> None:
        self.server = server
        self.client = client
        self.settings = security_settings()

    async def __call__(self, query: str, variables: dict[str, Any], *, role: str) -> Any:
        response = await self.client.post(
            "/graphql",
            json={"query": query, "variables": variables},
            headers={"Authorization": f"Bearer {token_for(self.settings, role, sub='svc')}"},
            timeout=60,
        )
        return next(iter(response.json()["data"].values()))

    async def template(self) -> str:
        slug = f"hostile-{uuid.uuid4().hex[:12]}"
        created = await self(CREATE_TEMPLATE, {"input": template_input(slug)}, role="manager")
        assert created["__typename"] == "Template", created
        return slug

    async def event_type(self, **fields: Any) -> tuple[str, dict[str, Any]]:
        name = f"hostile.{uuid.uuid4().hex[:12]}"
        data = {"name": name, "templateSlug": await self.template(), "channels": ["IN_APP"]}
        return name, await self(REGISTER, {"input": {**data, **fields}}, role="manager")


@pytest.fixture
async def live(live_server: LiveServer) -> Any:
    async with (
        httpx.AsyncClient(base_url=live_server.url) as client,
        httpx.AsyncClient(base_url=live_server.url) as health,
    ):
        yield Live(live_server, client), health


# --- payload schemas: SSRF --------------------------------------------------------------------


async def test_a_remote_ref_in_a_payload_schema_is_refused_when_saved(live, recorder):
    api, health = live
    schema = {"$ref": recorder.url("/internal-secret")}
    (_, result), watch = await while_probing(health, api.event_type(payloadSchema=schema))
    assert result["__typename"] == "ValidationError", result
    assert result["field"] == "payloadSchema"
    assert "not local" in result["message"]
    assert recorder.hits == []
    watch.assert_answered()


async def test_a_remote_ref_stored_before_fetches_nothing(sec_client, sgql, session, recorder):
    """A schema saved before refs were checked: validation uses a registry that retrieves
    nothing, so sendEvent gets a typed refusal and the URL is never asked."""
    slug = f"ssrf-{uuid.uuid4().hex[:8]}"
    manager = token_for(sgql.settings, "manager")
    created = await sgql(CREATE_TEMPLATE, {"input": template_input(slug)}, token=manager)
    assert created["data"]["createTemplate"]["__typename"] == "Template"
    name = f"ssrf.{uuid.uuid4().hex[:8]}"
    session.add(
        EventType(
            name=name,
            builtin=False,
            description="",
            payload_schema={"$ref": recorder.url("/internal-secret")},
            template_slug=slug,
            channels=["in_app"],
            critical=False,
        )
    )
    await session.flush()
    attack = sgql(
        SEND,
        {"input": {"type": name, "userIds": ["u1"], "payload": {"x": 1}}},
        token=token_for(sgql.settings, "service"),
    )
    result, watch = await while_probing(sec_client, attack)
    refused = result["data"]["sendEvent"]
    assert refused["__typename"] == "ValidationError", refused
    assert refused["field"] == "payload"
    assert recorder.hits == []
    watch.assert_answered()


# --- payload schemas: ReDoS -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("schema", "payload", "field"),
    [
        (
            {"type": "object", "properties": {"name": {"type": "string", "pattern": "^(a+)+$"}}},
            {"name": "a" * 24 + "!"},
            "payload.name",
        ),
        (
            {"type": "object", "patternProperties": {"^(a+)+$": {"type": "integer"}}},
            {"a" * 24 + "!": 1, "a" * 24: "not an integer"},
            "payload." + "a" * 24,
        ),
        (
            {
                "type": "object",
                "patternProperties": {"^(a+)+$": {}},
                "additionalProperties": False,
            },
            {"a" * 24 + "!": 1},
            "payload",
        ),
    ],
    ids=["pattern", "patternProperties", "additionalProperties"],
)
async def test_catastrophic_patterns_match_in_linear_time(live, schema, payload, field):
    api, health = live
    name, registered = await api.event_type(payloadSchema=schema)
    assert registered["__typename"] == "EventType", registered
    attack = api(
        SEND, {"input": {"type": name, "userIds": ["u1"], "payload": payload}}, role="service"
    )
    result, watch = await while_probing(health, attack)
    assert result["__typename"] == "ValidationError", result
    assert result["field"] == field
    watch.assert_answered()


@pytest.mark.parametrize(
    "schema",
    [
        {"properties": {"x": {"type": "string", "pattern": "^(a|aa)+\\1$"}}},
        {"properties": {"x": {"type": "string", "pattern": "^(?=a+)+b"}}},
        {"patternProperties": {"^x": {}}, "unevaluatedProperties": False},
    ],
    ids=["backreference", "lookahead", "with unevaluatedProperties"],
)
async def test_patterns_beyond_linear_matching_are_refused_when_saved(live, schema):
    api, _ = live
    _, result = await api.event_type(payloadSchema=schema)
    assert result["__typename"] == "ValidationError", result
    assert result["field"] == "payloadSchema"


async def test_a_self_referencing_schema_is_refused_when_saved(live):
    api, _ = live
    _, result = await api.event_type(payloadSchema={"$ref": "#"})
    assert result["__typename"] == "ValidationError", result
    assert result["field"] == "payloadSchema"


# --- nesting ----------------------------------------------------------------------------------


async def test_a_payload_nested_500_deep_is_a_validation_error(live):
    api, health = live
    name, registered = await api.event_type()
    assert registered["__typename"] == "EventType", registered
    attack = api(
        SEND, {"input": {"type": name, "userIds": ["u1"], "payload": _nested(500)}}, role="service"
    )
    result, watch = await while_probing(health, attack)
    assert result["__typename"] == "ValidationError", result
    assert result["field"] == "payload"
    assert "nested" in result["message"]
    watch.assert_answered()


async def test_a_campaign_payload_nested_500_deep_is_a_validation_error(live):
    api, health = live
    campaign = {
        "name": "deep",
        "templateSlug": await api.template(),
        "channels": ["IN_APP"],
        "audience": {"userIds": ["u1"]},
        "payload": _nested(500),
    }
    result, watch = await while_probing(
        health, api(CREATE_CAMPAIGN, {"input": campaign}, role="manager")
    )
    assert result["__typename"] == "ValidationError", result
    assert result["field"] == "payload"
    watch.assert_answered()


async def test_a_payload_schema_nested_500_deep_is_refused_when_saved(live):
    api, _ = live
    schema: dict[str, Any] = {"type": "object"}
    for _ in range(250):  # 500 levels: properties, then the property's schema
        schema = {"type": "object", "properties": {"a": schema}}
    _, result = await api.event_type(payloadSchema=schema)
    assert result["__typename"] == "ValidationError", result
    assert result["field"] == "payloadSchema"


# --- crons that never occur -------------------------------------------------------------------


async def create_scheduled_campaign(sgql: Any, schedule: dict[str, str]) -> dict[str, Any]:
    """``createCampaign``'s answer for an in-app campaign on ``schedule``, by a manager."""
    manager = token_for(sgql.settings, "manager")
    slug = f"schedule-{uuid.uuid4().hex[:8]}"
    await sgql(CREATE_TEMPLATE, {"input": template_input(slug)}, token=manager)
    campaign = {
        "name": "scheduled",
        "templateSlug": slug,
        "channels": ["IN_APP"],
        "audience": {"userIds": ["u1"]},
        "schedule": schedule,
    }
    result: dict[str, Any] = (await sgql(CREATE_CAMPAIGN, {"input": campaign}, token=manager))[
        "data"
    ]["createCampaign"]
    return result


async def test_a_campaign_cron_that_never_occurs_is_refused(sgql):
    result = await create_scheduled_campaign(sgql, {"cron": "0 0 30 2 *"})
    assert result["__typename"] == "ValidationError", result
    assert result["field"] == "schedule.cron"


async def test_a_digest_cron_that_never_occurs_is_refused(sgql):
    manager = token_for(sgql.settings, "manager")
    slug = f"cron-{uuid.uuid4().hex[:8]}"
    await sgql(CREATE_TEMPLATE, {"input": template_input(slug)}, token=manager)
    data = {
        "name": f"never.{uuid.uuid4().hex[:8]}",
        "templateSlug": slug,
        "channels": ["IN_APP"],
        "digest": {"cron": "0 0 30 2 *"},
    }
    result = (await sgql(REGISTER, {"input": data}, token=manager))["data"]
    assert result["registerEventType"]["__typename"] == "ValidationError", result
    assert result["registerEventType"]["field"] == "digest.cron"


def test_a_stored_digest_cron_that_never_occurs_sends_at_once():
    """A digest saved before such crons were refused: dispatch sends the event at once
    (no digest time) instead of failing, which Celery retried for ever."""
    rule = {"every_seconds": None, "cron": "0 0 30 2 *", "key": None, "template_slug": None}
    assert digests.due_at(rule, "news", None, datetime.now(UTC)) is None


# --- tokens -----------------------------------------------------------------------------------

BAD_EXP = {"exp as a string": str(int(time.time()) + 600), "exp 10^30": 10**30}


def _token(exp: Any) -> str:
    claims = {"sub": "attacker", "roles": ["admin"], "type": "access", "exp": exp}
    return jwt.encode(claims, SECRET, algorithm="HS256")


@pytest.mark.parametrize("case", sorted(BAD_EXP))
async def test_a_token_with_an_impossible_exp_is_unauthenticated_over_http(sec_client, case):
    response = await sec_client.post(
        "/graphql",
        json={"query": "{ viewer { id } }"},
        headers={"Accept": "application/json", "Authorization": f"Bearer {_token(BAD_EXP[case])}"},
    )
    assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


@pytest.mark.parametrize("case", sorted(BAD_EXP))
async def test_a_token_with_an_impossible_exp_closes_the_socket_with_4403(live_server, case):
    async with connect(live_server.url) as ws:
        with pytest.raises(ConnectionClosed) as closed:
            await init(ws, _token(BAD_EXP[case]))
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4403


# --- low --------------------------------------------------------------------------------------


@pytest.mark.parametrize("event_id", ["not-a-uuid", "e-1", "' OR 1=1 --"])
async def test_a_malformed_event_id_is_null(sgql, event_id):
    result = await sgql(
        "query($id: ID!) { event(id: $id) { id type } }",
        {"id": event_id},
        token=token_for(sgql.settings, "manager"),
    )
    assert result["data"] == {"event": None}, result


async def test_localtime_is_not_a_time_zone(sgql):
    set_preferences = """
    mutation($input: PreferencesInput!) {
      setPreferences(input: $input) { __typename ... on Error { code field } }
    }
    """
    result = await sgql(
        set_preferences,
        {"input": {"timezone": "localtime"}},
        token=token_for(sgql.settings, "user", sub="tz-user"),
    )
    assert result["data"]["setPreferences"] == {
        "__typename": "ValidationError",
        "code": "VALIDATION",
        "field": "timezone",
    }


async def test_localtime_is_not_a_campaign_time_zone(sgql):
    result = await create_scheduled_campaign(sgql, {"cron": "0 9 * * *", "timezone": "localtime"})
    assert result["__typename"] == "ValidationError", result
    assert result["field"] == "schedule.timezone"


async def test_a_zero_heartbeat_interval_is_refused(live_server, settings):
    async with connect(live_server.url) as ws:
        ack = await init(ws, token_for(settings, "user", sub="u-beat"))
        assert ack["type"] == "connection_ack"
        await subscribe(ws, "subscription { heartbeat(intervalSeconds: 0) { at } }")
        message = await receive(ws)
    errors = message["payload"] if message["type"] == "error" else message["payload"]["errors"]
    assert errors[0]["extensions"]["code"] == "VALIDATION", message
    assert errors[0]["extensions"]["field"] == "intervalSeconds"


CREATE_ENDPOINT = """
mutation($input: WebhookEndpointInput!) {
  createWebhookEndpoint(input: $input) { __typename ... on Error { code field message } }
}
"""


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]:6379/",
        "http://127.0.0.1:9977/internal-secret",
        "http://10.0.0.8/",
        "http://[::ffff:169.254.169.254]/",
        "http://localhost:6379/",
    ],
)
async def test_webhooks_to_private_addresses_are_refused_when_saved(engine, url):
    settings = security_settings(webhook_allow_private_targets=False)
    async with app_client(settings) as client:
        response = await client.post(
            "/graphql",
            json={"query": CREATE_ENDPOINT, "variables": {"input": {"url": url}}},
            headers={"Authorization": f"Bearer {token_for(settings, 'admin')}"},
        )
    result = response.json()["data"]["createWebhookEndpoint"]
    assert result["__typename"] == "ValidationError", result
    assert result["field"] == "url"


async def test_webhooks_to_private_addresses_are_refused_at_send_time(session, recorder):
    """An endpoint stored while private targets were allowed (or whose name resolves to a
    private address since): the POST is refused after resolution and never reaches it."""
    settings = security_settings(webhook_allow_private_targets=False)
    endpoint = WebhookEndpoint(
        id=uuid.uuid4(),
        url=recorder.url("/hook").replace("127.0.0.1", "localhost"),
        secret="whsec_" + "x" * 32,
        description="",
        event_types=[],
        statuses=[],
        active=True,
        created_by="admin",
    )
    session.add(endpoint)
    await session.flush()
    async with httpx.AsyncClient() as http:
        result = await webhooks.deliver(
            session,
            http,
            settings,
            endpoint_id=str(endpoint.id),
            message_id="m-1",
            created_at=datetime.now(UTC).isoformat(),
            updates=[{"id": "d-1", "status": "sent"}],
            attempt=1,
        )
    assert not result.delivered
    assert recorder.hits == []
    # Refusing is final: a retry would only probe the same address again.
    assert result.dropped and result.retry_in is None


def test_private_webhook_targets_are_allowed_outside_production_only():
    assert security_settings().webhook_private_targets_allowed
    production = Settings(
        _env_file=None,  # type: ignore[call-arg]
        environment="production",
        jwt_secret="a-real-production-secret-of-32-chars-or-more",
    )
    assert not production.webhook_private_targets_allowed
    assert (
        security_settings(webhook_allow_private_targets=False).webhook_private_targets_allowed
        is False
    )
