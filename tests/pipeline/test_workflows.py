"""Workflows through real worker and beat processes: the three-step workflow (in-app, a 2 s
delay, an email only when the in-app message is still unread) reaching the real SMTP sink,
cancelling by key and by event type, and a worker killed (SIGKILL) while a run waits in its
delay: the run resumes in a new worker and each step runs, and sends, once."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.factories import template_and_event_type, token_for
from tests.pipeline.servers import eventually
from tests.processes import Process

SAVE = """mutation($type: String!, $steps: JSON!, $cancels: [String!]) {
  saveWorkflow(eventType: $type, steps: $steps, cancels: $cancels) { __typename
  ... on Workflow { version } ... on Error { code message field } } }"""
SEND = """mutation($input: EventInput!) { sendEvent(input: $input) { __typename
  ... on EventAccepted { eventId } ... on Error { code message field } } }"""
RUNS = """query($filter: WorkflowRunFilter) { workflowRuns(filter: $filter, first: 10) {
  edges { node { id userId status workflowVersion cancelKey } } } }"""
RUN = """query($id: ID!) { workflowRun(id: $id) { status cursor error
  steps { path name type status outcome attempts } } }"""
CANCEL = """mutation($key: String!) { cancelWorkflowRuns(key: $key) { __typename
  ... on WorkflowRunsCancelled { cancelled } ... on Error { code message } } }"""
INBOX = """{ inbox(first: 20) { edges { node { id eventType read } } } }"""
MARK_READ = """mutation($ids: [ID!]!) { markRead(ids: $ids) { __typename } }"""
EVENT_DELIVERIES = """query($id: ID!) { event(id: $id) { type deliveries { userId channel } } }"""
DELIVERIES = """query($filter: DeliveryFilter) { deliveries(filter: $filter, first: 50) {
  edges { node { userId channel } } } }"""

THREE_STEPS = [
    {"type": "send", "name": "inapp", "channel": "in_app"},
    {"type": "delay", "name": "wait", "duration": "2s"},
    {
        "type": "branch",
        "name": "unread",
        "condition": "steps.inapp.read == false",
        "then": [{"type": "send", "name": "email", "channel": "email"}],
    },
]


@pytest.fixture
def admin(settings: Any) -> str:
    return token_for(settings, "admin", sub="admin-workflows")


async def workflow_type(e2e: Any, admin: str, steps: list[dict[str, Any]] | None = None) -> str:
    """A new event type (in-app + email template, a unique subject) with the three-step
    workflow (or ``steps``) saved: its name."""
    suffix = uuid.uuid4().hex[:8]
    slug = f"wf-{suffix}"
    content = [
        {"channel": "IN_APP", "locale": "en", "title": "New for you", "body": "{{ payload.item }}"},
        {
            "channel": "EMAIL",
            "locale": "en",
            "subject": f"Unread {suffix}",
            "body": "Hi {{ user.first_name }}, {{ payload.item }} is waiting.",
        },
    ]
    name = f"wf.{suffix}"
    await template_and_event_type(e2e, admin, slug=slug, content=content, name=name)
    saved = await e2e(SAVE, {"type": name, "steps": steps or THREE_STEPS}, token=admin)
    assert saved["data"]["saveWorkflow"]["__typename"] == "Workflow", saved
    return name


async def send(e2e: Any, settings: Any, input: dict[str, Any]) -> str:
    service = token_for(settings, "service", sub="wf-service")
    body = await e2e(SEND, {"input": input}, token=service)
    assert body["data"]["sendEvent"]["__typename"] == "EventAccepted", body
    return body["data"]["sendEvent"]["eventId"]


async def runs_of(e2e: Any, admin: str, **filter: Any) -> dict[str, dict[str, Any]]:
    body = await e2e(RUNS, {"filter": filter}, token=admin)
    return {e["node"]["userId"]: e["node"] for e in body["data"]["workflowRuns"]["edges"]}


async def run_detail(e2e: Any, admin: str, run_id: str) -> dict[str, Any]:
    body = await e2e(RUN, {"id": run_id}, token=admin)
    return body["data"]["workflowRun"]


def mails(smtp: Any, address: str, name: str) -> list[Any]:
    subject = f"Unread {name.split('.')[1]}"
    return [m for m in smtp.to(address) if m["Subject"] == subject]


async def test_the_email_goes_out_only_to_the_user_who_left_the_in_app_message_unread(
    e2e, settings, admin, smtp, beat
) -> None:
    name = await workflow_type(e2e, admin)
    event_id = await send(
        e2e,
        settings,
        {"type": name, "userIds": ["u-alice", "u-bruno"], "payload": {"item": "a lamp"}},
    )

    # Both get the in-app message at once; Bruno reads his while the run waits.
    bruno = token_for(settings, "user", sub="u-bruno")

    async def bruno_item() -> str | None:
        body = await e2e(INBOX, token=bruno)
        found = [
            e["node"]["id"]
            for e in body["data"]["inbox"]["edges"]
            if e["node"]["eventType"] == name
        ]
        return found[0] if found else None

    item = await eventually(bruno_item, timeout=10)
    body = await e2e(MARK_READ, {"ids": [item]}, token=bruno)
    assert body["data"]["markRead"]["__typename"] == "InboxChange", body
    runs = await runs_of(e2e, admin, eventId=event_id)
    assert set(runs) == {"u-alice", "u-bruno"}
    assert runs["u-alice"]["workflowVersion"] == 2

    async def finished() -> bool:
        runs = await runs_of(e2e, admin, eventId=event_id)
        return all(r["status"] == "completed" for r in runs.values())

    assert await eventually(finished, timeout=20)
    assert len(mails(smtp, "alice@example.com", name)) == 1
    assert mails(smtp, "bruno@example.com", name) == []

    alice = await run_detail(e2e, admin, runs["u-alice"]["id"])
    assert [(s["path"], s["name"], s["status"]) for s in alice["steps"]] == [
        ("0", "inapp", "done"),
        ("1", "wait", "done"),
        ("2", "unread", "done"),
        ("2.then.0", "email", "done"),
    ]
    outcomes = {s["name"]: s["outcome"] for s in alice["steps"]}
    assert outcomes["inapp"]["status"] == "sent"
    assert outcomes["unread"]["value"] is True
    assert outcomes["email"]["channels"] == {"email": "sent"}
    bruno_run = await run_detail(e2e, admin, runs["u-bruno"]["id"])
    assert [s["name"] for s in bruno_run["steps"]] == ["inapp", "wait", "unread"]
    assert {s["name"]: s["outcome"] for s in bruno_run["steps"]}["unread"]["value"] is False

    # The history by the event's id shows what its runs sent.
    expected = [("u-alice", "EMAIL"), ("u-alice", "IN_APP"), ("u-bruno", "IN_APP")]
    body = await e2e(EVENT_DELIVERIES, {"id": event_id}, token=admin)
    found = body["data"]["event"]
    assert found["type"] == name
    assert sorted((d["userId"], d["channel"]) for d in found["deliveries"]) == expected
    body = await e2e(DELIVERIES, {"filter": {"eventId": event_id}}, token=admin)
    edges = body["data"]["deliveries"]["edges"]
    assert sorted((e["node"]["userId"], e["node"]["channel"]) for e in edges) == expected


async def test_cancel_by_key_and_by_an_event_type_stop_waiting_runs(
    e2e, settings, admin, smtp, beat
) -> None:
    name = await workflow_type(e2e, admin)
    key = f"invoice-{uuid.uuid4().hex[:8]}"
    event_id = await send(
        e2e,
        settings,
        {"type": name, "userIds": ["u-chen"], "payload": {"item": "x"}, "cancelKey": key},
    )

    async def waiting() -> bool:
        runs = await runs_of(e2e, admin, eventId=event_id)
        return runs.get("u-chen", {}).get("status") == "waiting"

    assert await eventually(waiting, timeout=10)
    body = await e2e(CANCEL, {"key": key}, token=token_for(settings, "service", sub="billing"))
    assert body["data"]["cancelWorkflowRuns"] == {
        "__typename": "WorkflowRunsCancelled",
        "cancelled": 1,
    }

    # An event of a type whose workflow cancels this one's stops the user's runs with the
    # same cancel key (a plain, one-step type: it is sent as it always was).
    paid = await workflow_type(
        e2e, admin, steps=[{"type": "send", "name": "send", "channel": "in_app"}]
    )
    body = await e2e(
        SAVE,
        {
            "type": paid,
            "steps": [{"type": "send", "name": "send", "channels": ["in_app"]}],
            "cancels": [name],
        },
        token=admin,
    )
    assert body["data"]["saveWorkflow"]["__typename"] == "Workflow", body
    other_key = f"invoice-{uuid.uuid4().hex[:8]}"
    reminder = await send(
        e2e,
        settings,
        {"type": name, "userIds": ["u-dana"], "payload": {"item": "y"}, "cancelKey": other_key},
    )

    async def dana_waiting() -> bool:
        runs = await runs_of(e2e, admin, eventId=reminder)
        return runs.get("u-dana", {}).get("status") == "waiting"

    assert await eventually(dana_waiting, timeout=10)
    await send(e2e, settings, {"type": paid, "userIds": ["u-dana"], "cancelKey": other_key})

    async def dana_cancelled() -> bool:
        runs = await runs_of(e2e, admin, eventId=reminder)
        return runs["u-dana"]["status"] == "cancelled"

    assert await eventually(dana_cancelled, timeout=10)
    await asyncio.sleep(3.5)  # past the delay: nothing more happens
    for user, event in (("u-chen", event_id), ("u-dana", reminder)):
        run = (await runs_of(e2e, admin, eventId=event))[user]
        assert run["status"] == "cancelled"
        detail = await run_detail(e2e, admin, run["id"])
        assert [s["name"] for s in detail["steps"]] == ["inapp", "wait"]
    assert mails(smtp, "chen@example.com", name) == []
    assert mails(smtp, "dana@example.com", name) == []


async def test_a_worker_killed_while_a_run_waits_resumes_it_and_each_step_runs_once(
    e2e, settings, admin, smtp, beat, worker, worker_env, engine: AsyncEngine
) -> None:
    name = await workflow_type(e2e, admin)
    # Only a worker of this test's runs the event: the session's is stopped meanwhile.
    worker.stop()
    try:
        own = Process(["worker", "--concurrency", "1"], worker_env, ready="ready.")
        event_id = await send(
            e2e, settings, {"type": name, "userIds": ["u-alice"], "payload": {"item": "z"}}
        )

        async def waiting() -> dict[str, Any] | None:
            run = (await runs_of(e2e, admin, eventId=event_id)).get("u-alice")
            return run if run and run["status"] == "waiting" else None

        run = await eventually(waiting, timeout=15)
        own.process.kill()  # SIGKILL: no shutdown, nothing flushed
        own.process.wait(10)
        # The delay ends while no worker runs: beat releases the run into the queue.
        await asyncio.sleep(3)
        assert (await run_detail(e2e, admin, run["id"]))["status"] in ("waiting", "queued")
        assert mails(smtp, "alice@example.com", name) == []
        again = Process(["worker", "--concurrency", "1"], worker_env, ready="ready.")
        try:

            async def completed() -> bool:
                return (await run_detail(e2e, admin, run["id"]))["status"] == "completed"

            assert await eventually(completed, timeout=20)
        finally:
            again.stop()
    finally:
        worker.restart()
    assert len(mails(smtp, "alice@example.com", name)) == 1
    detail = await run_detail(e2e, admin, run["id"])
    assert [(s["name"], s["attempts"]) for s in detail["steps"]] == [
        ("inapp", 1),
        ("wait", 1),
        ("unread", 1),
        ("email", 1),
    ]
    # One delivery per send step: the in-app message and the email, each once.
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT channel, count(*) FROM deliveries WHERE user_id = 'u-alice' "
                    "AND event_type = :t GROUP BY channel"
                ),
                {"t": name},
            )
        ).all()
    assert dict(rows) == {"in_app": 1, "email": 1}
