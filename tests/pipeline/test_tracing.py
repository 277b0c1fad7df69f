"""One trace from the mutation, through the broker and the worker, to the provider call."""

from __future__ import annotations

import uuid

import httpx

from tests.conftest import start_live_server, stop_live_server
from tests.deploy.conftest import http_recorder  # noqa: F401 - a fixture
from tests.deploy.test_tracing import spans_of
from tests.factories import CREATE_TEMPLATE, token_for
from tests.pipeline.servers import eventually
from tests.pipeline.test_faults import SwappableWorker

SEND = """mutation($input: EventInput!) { sendEvent(input: $input) {
  ... on EventAccepted { eventId } } }"""
EVENT = """query($id: ID!) { event(id: $id) { deliveries { status } } }"""


async def test_a_mutations_trace_reaches_the_worker_and_the_sms_provider(
    settings,
    worker,
    worker_env,
    sms_provider,
    http_recorder,  # noqa: F811
):
    endpoint, recorder = http_recorder
    otlp = {"HERALD_OTLP_ENDPOINT": endpoint, "OTEL_BSP_SCHEDULE_DELAY": "100"}
    api = start_live_server(otlp)
    admin = token_for(settings, "admin")
    try:
        with SwappableWorker(worker, {**worker_env, **otlp}):
            async with httpx.AsyncClient(base_url=api.url, timeout=30) as client:

                async def call(query: str, variables: dict, token: str) -> dict:
                    r = await client.post(
                        "/graphql",
                        json={"query": query, "variables": variables},
                        headers={"Authorization": f"Bearer {token}"},
                    )
                    return r.json()

                slug = f"traced-{uuid.uuid4().hex[:8]}"
                content = [{"channel": "SMS", "locale": "en", "body": "Hi {{ user.first_name }}"}]
                made = await call(
                    CREATE_TEMPLATE,
                    {"input": {"slug": slug, "name": "T", "description": "", "content": content}},
                    admin,
                )
                assert made["data"]["createTemplate"]["__typename"] == "Template"
                sent = await call(
                    SEND,
                    {
                        "input": {
                            "type": "traced.sms",
                            "userIds": ["u-alice"],
                            "templateSlug": slug,
                            "channels": ["SMS"],
                        }
                    },
                    token_for(settings, "service", sub="svc"),
                )
                event_id = sent["data"]["sendEvent"]["eventId"]

                async def delivered() -> bool:
                    body = await call(EVENT, {"id": event_id}, admin)
                    return [d["status"] for d in body["data"]["event"]["deliveries"]] == ["SENT"]

                await eventually(delivered, timeout=20)

                def one_trace(requests: list) -> dict | None:
                    spans = spans_of(requests)
                    by_trace: dict[bytes, set[tuple[str, str]]] = {}
                    for service, name, span in spans:
                        by_trace.setdefault(span.trace_id, set()).add((service, name))
                    for names in by_trace.values():
                        services = {s for s, _ in names}
                        # The task's span ends (and is exported) after the send's inside it:
                        # wait for the whole trace, not just its first spans.
                        if (
                            {"herald-api", "herald-worker"} <= services
                            and any(n == "send sms" for _, n in names)
                            and any("events.dispatch" in n for _, n in names)
                        ):
                            return {"names": names}
                    return None

                found = recorder.wait(one_trace, seconds=15)
    finally:
        stop_live_server(api)
    assert found, sorted({(s, n) for s, n, _ in spans_of(recorder.requests)})
    names = found["names"]
    assert ("herald-api", "POST /graphql") in names
    assert any(s == "herald-worker" and "events.dispatch" in n for s, n in names), names
    assert any(s == "herald-worker" and n == "POST" for s, n in names), names  # the provider call
