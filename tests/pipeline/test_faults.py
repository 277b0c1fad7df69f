"""Faults injected into real processes: the platform loses nothing and sends nothing twice.

Each test restores what it broke. Every test adds a line to the faults report printed at the
end of the run (load applied, fault injected, accepted, delivered, lost, duplicated).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import redis
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy import text

from backend.broker import purge_work_queues
from tests.conftest import TEST_RABBITMQ_URL, free_port, start_live_server, stop_live_server
from tests.factories import CREATE_TEMPLATE, token_for
from tests.pipeline.servers import (
    FAULT_REPORTS,
    FaultReport,
    SmtpSink,
    TcpProxy,
    eventually,
)
from tests.processes import Process

SEND = """mutation($input: EventInput!) { sendEvent(input: $input) { __typename
  ... on EventAccepted { eventId } ... on Error { code message } } }"""
EVENT = """query($id: ID!) { event(id: $id) { deliveries { status attempts { number error }
  timeline { status reason } } } }"""


@pytest.fixture
def admin(settings: Any) -> str:
    return token_for(settings, "admin", sub="admin-faults")


@pytest.fixture
async def marked_template(e2e: Any, admin: str) -> str:
    """An email template whose subject is the event id, so the sink can count each event."""
    slug = f"fault-{uuid.uuid4().hex[:8]}"
    content = [
        {"channel": "EMAIL", "locale": "en", "subject": "{{ event.id }}", "body": "Hi."},
        {"channel": "IN_APP", "locale": "en", "title": "{{ event.id }}", "body": "Hi."},
    ]
    body = await e2e(
        CREATE_TEMPLATE,
        {"input": {"slug": slug, "name": "Fault", "description": "", "content": content}},
        token=admin,
    )
    assert body["data"]["createTemplate"]["__typename"] == "Template", body
    return slug


class SwappableWorker:
    """Stops the session's worker and runs one with other settings; puts it back after."""

    def __init__(self, session_worker: Process, env: dict[str, str]) -> None:
        self.session_worker = session_worker
        self.env = env
        self.process: Process | None = None

    def __enter__(self) -> Process:
        self.session_worker.stop()
        self.process = Process(["worker", "--concurrency", "2"], self.env, ready="ready.")
        return self.process

    def __exit__(self, kind: type[BaseException] | None, *exc: object) -> None:
        assert self.process is not None
        self.process.stop()
        if kind is not None:
            # A drill that failed may leave its load queued: the session's worker would send
            # it to the session's sinks, into the mailboxes of the tests after this one.
            with ThreadPoolExecutor(1) as pool:
                pool.submit(asyncio.run, purge_work_queues(TEST_RABBITMQ_URL)).result()
        self.session_worker.restart()


async def send_emails(
    e2e: Any,
    settings: Any,
    template: str,
    count: int,
    *,
    users: list[str],
    concurrency: int = 8,
    backoff: float = 0.0,
) -> tuple[list[str], int]:
    """Send ``count`` one-recipient email events; (accepted ids, refused count). A client
    refused with UNAVAILABLE waits ``backoff`` seconds before its next event, as a service
    would."""
    token = token_for(settings, "service", sub="svc-faults")
    accepted: list[str] = []
    refused = 0
    numbers = iter(range(count))

    async def client() -> None:
        nonlocal refused
        for i in numbers:
            body = await e2e(
                SEND,
                {
                    "input": {
                        "type": "fault.check",
                        "userIds": [users[i % len(users)]],
                        "templateSlug": template,
                        "channels": ["EMAIL"],
                    }
                },
                token=token,
            )
            result = body["data"]["sendEvent"]
            if result["__typename"] == "EventAccepted":
                accepted.append(result["eventId"])
            else:
                assert result["code"] == "UNAVAILABLE", result
                refused += 1
                await asyncio.sleep(backoff)

    await asyncio.gather(*(client() for _ in range(concurrency)))
    return accepted, refused


async def send_until_accepted(
    e2e: Any, settings: Any, template: str, user: str, timeout: float = 30.0
) -> str:
    """Send one email event, again every 0.5 s while it is refused with UNAVAILABLE; its id."""
    token = token_for(settings, "service", sub="svc-faults")
    variables = {
        "input": {
            "type": "fault.check",
            "userIds": [user],
            "templateSlug": template,
            "channels": ["EMAIL"],
        }
    }

    async def accepted() -> str | None:
        result = (await e2e(SEND, variables, token=token))["data"]["sendEvent"]
        if result["__typename"] == "EventAccepted":
            return str(result["eventId"])
        assert result["code"] == "UNAVAILABLE", result
        return None

    return str(await eventually(accepted, timeout=timeout, interval=0.5))


def subjects(sink: SmtpSink) -> Counter[str]:
    with sink.lock:
        return Counter(str(m["Subject"]) for m in sink.messages)


async def until_delivered(sink: SmtpSink, ids: list[str], timeout: float) -> Counter[str]:
    wanted = set(ids)

    async def check() -> Counter[str] | None:
        seen = subjects(sink)
        return seen if wanted <= set(seen) else None

    await eventually(check, timeout=timeout, interval=0.5)
    await asyncio.sleep(2)  # anything sent twice has time to arrive
    return subjects(sink)


def report(name: str, load: str, fault: str, ids: list[str], seen: Counter[str], **kw: Any):
    delivered = sum(1 for i in ids if seen[i] >= 1)
    duplicated = sum(seen[i] - 1 for i in ids if seen[i] > 1)
    line = FaultReport(
        name=name,
        load=load,
        fault=fault,
        accepted=len(ids),
        delivered=delivered,
        lost=len(ids) - delivered,
        duplicated=duplicated,
        **kw,
    )
    FAULT_REPORTS.append(line)
    return line


async def test_smtp_down_for_30_seconds_then_back_sends_each_email_once(
    e2e, settings, worker, worker_env, marked_template
):
    sink = SmtpSink()
    port = free_port()
    env = {
        **worker_env,
        "HERALD_SMTP_PORT": str(port),
        "HERALD_RETRY_BASE_SECONDS": "2",
        "HERALD_RETRY_MAX_SECONDS": "8",
        "HERALD_DELIVERY_MAX_ATTEMPTS": "12",
    }
    with SwappableWorker(worker, env):
        down_at = time.monotonic()
        ids, refused = await send_emails(
            e2e, settings, marked_template, 40, users=["u-alice", "u-bruno", "u-chen"]
        )
        await asyncio.sleep(max(0.0, 30 - (time.monotonic() - down_at)))
        controller = Controller(sink, hostname="127.0.0.1", port=port)
        controller.start()
        try:
            seen = await until_delivered(sink, ids, timeout=60)
        finally:
            controller.stop()
    line = report("smtp-down", "40 emails", "SMTP server down 30 s", ids, seen, refused=refused)
    assert (line.accepted, line.lost, line.duplicated, refused) == (40, 0, 0, 0)
    # They went out after retries, each with its failed attempts on record.
    body = await e2e(EVENT, {"id": ids[0]}, token=token_for(settings, "admin"))
    [delivery] = body["data"]["event"]["deliveries"]
    assert delivery["status"] == "SENT"
    assert len(delivery["attempts"]) >= 3
    assert all(a["error"] for a in delivery["attempts"][:-1])


class AuthStandIn:
    """An auth service that is slow (``delay`` s), failing (500), or fine."""

    def __init__(self) -> None:
        self.mode = "slow"
        self.delay = 5.0
        self.requests = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.requests += 1
                if owner.mode == "slow":
                    time.sleep(owner.delay)
                if owner.mode == "error":
                    self.send_response(500)
                    self.send_header("content-length", "0")
                    self.end_headers()
                    return
                user_id = self.path.rstrip("/").rsplit("/", 1)[-1]
                body = json.dumps(
                    {"id": user_id, "email": f"{user_id}@example.com", "first_name": "F"}
                ).encode()
                try:
                    self.send_response(200)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    pass  # the caller gave up waiting

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.mark.parametrize("mode", ["slow", "error"])
async def test_auth_service_slow_or_failing_bounded_then_dead_then_replayed(
    e2e, settings, worker, worker_env, smtp, marked_template, mode
):
    auth = AuthStandIn()
    auth.mode = mode
    env = {
        **worker_env,
        "HERALD_AUTH_URL": auth.url,
        "HERALD_AUTH_TIMEOUT_SECONDS": "1",
        "HERALD_AUTH_RETRIES": "1",
        "HERALD_DELIVERY_MAX_ATTEMPTS": "3",
        "HERALD_RETRY_BASE_SECONDS": "0.5",
        "HERALD_RETRY_MAX_SECONDS": "1",
    }
    users = [f"u-auth-{mode}-{uuid.uuid4().hex[:6]}" for _ in range(3)]
    admin = token_for(settings, "admin")
    try:
        with SwappableWorker(worker, env):
            started = time.monotonic()
            ids, refused = await send_emails(e2e, settings, marked_template, 3, users=users)

            async def all_dead() -> list[dict[str, Any]] | None:
                found = []
                for event_id in ids:
                    body = await e2e(EVENT, {"id": event_id}, token=admin)
                    found += body["data"]["event"]["deliveries"]
                return found if [d["status"] for d in found] == ["DEAD"] * 3 else None

            dead = await eventually(all_dead, timeout=40, interval=0.5)
            elapsed = time.monotonic() - started
            # Three attempts, each bounded by two 1-second tries of the auth service.
            assert elapsed < 25, elapsed
            reason = dead[0]["timeline"][-1]["reason"]
            assert "gave up after 3 attempts" in reason and "auth service" in reason
            assert len(dead[0]["attempts"]) == 3

            # The auth service recovers: replaying the dead letters delivers each once.
            auth.mode = "ok"
            retry = """mutation($ids: [ID!]!) { retryDeadLetters(ids: $ids) {
              __typename ... on DeadLettersRetried { retried } } }"""

            # A delivery's history reads DEAD before its batch commits the dead letter.
            async def dead_letters() -> list[str] | None:
                letters = await e2e(
                    "{ deadLetters(first: 100) { edges { node { deliveryId eventId } } } }",
                    token=admin,
                )
                found = [
                    e["node"]["deliveryId"]
                    for e in letters["data"]["deadLetters"]["edges"]
                    if e["node"]["eventId"] in ids
                ]
                return found if len(found) == 3 else None

            mine = await eventually(dead_letters, timeout=10, interval=0.2)
            replayed = await e2e(retry, {"ids": mine}, token=admin)
            assert len(replayed["data"]["retryDeadLetters"]["retried"]) == 3
            seen = await until_delivered(smtp, ids, timeout=30)
    finally:
        auth.server.shutdown()
    line = report(
        f"auth-{mode}",
        "3 emails",
        "auth service slow 5 s" if mode == "slow" else "auth service answering 500",
        ids,
        seen,
        refused=refused,
    )
    assert (line.lost, line.duplicated) == (0, 0)


def _rabbitmqctl(*args: str) -> None:
    ctl = shutil.which("rabbitmqctl") or "/usr/sbin/rabbitmqctl"
    # The node to restart: the machine's own by default; HERALD_TEST_RABBITMQ_NODE names a
    # private node (with HERALD_TEST_RABBITMQ_URL on its port) so the drill stops no one else's.
    node = os.environ.get("HERALD_TEST_RABBITMQ_NODE")
    command = [ctl, *(["-n", node] if node else []), *args]
    subprocess.run(command, check=True, capture_output=True, timeout=120)


async def test_rabbitmq_restart_while_2000_events_stream_in(
    e2e, settings, worker, worker_env, marked_template
):
    if not (shutil.which("rabbitmqctl") or os.path.exists("/usr/sbin/rabbitmqctl")):
        pytest.fail("rabbitmqctl is needed to restart RabbitMQ")
    users = ["u-alice", "u-bruno", "u-chen", "u-dana", "u-emil"]
    restarted = asyncio.Event()

    async def restart_when_streaming() -> None:
        await asyncio.sleep(1.5)
        await asyncio.to_thread(_rabbitmqctl, "stop_app")
        await asyncio.sleep(3)
        await asyncio.to_thread(_rabbitmqctl, "start_app")
        restarted.set()

    # A sink of its own: 2,000 emails must not crowd the other tests' mailboxes.
    smtp = SmtpSink()
    controller = Controller(smtp, hostname="127.0.0.1", port=free_port())
    controller.start()
    env = {**worker_env, "HERALD_SMTP_PORT": str(controller.port)}
    try:
        with SwappableWorker(worker, env):
            fault = asyncio.create_task(restart_when_streaming())
            try:
                ids, refused = await send_emails(
                    e2e, settings, marked_template, 2000, users=users, concurrency=16, backoff=0.2
                )
            finally:
                await fault
            assert restarted.is_set()
            # The API reconnected: an event sent after the restart is accepted, at once or
            # after the refusals of the few seconds its publisher takes to reconnect.
            ids.append(await send_until_accepted(e2e, settings, marked_template, "u-alice"))
            seen = await until_delivered(smtp, ids, timeout=240)
    finally:
        controller.stop()
    line = report(
        "rabbitmq-restart",
        "2,000 sendEvent calls, 16 at a time",
        "RabbitMQ stopped 3 s and started again mid-stream",
        ids,
        seen,
        refused=refused,
    )
    assert line.accepted + refused == 2001
    assert refused > 0, "the restart happened while no publish was in flight"
    assert (line.lost, line.duplicated) == (0, 0)


class SlowSink(SmtpSink):
    """Takes ``delay`` seconds to accept each message, and records only messages whose
    client is still there to hear the 250 (a client killed mid-transaction sent nothing)."""

    delay: float = 1.0

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        await asyncio.sleep(self.delay)
        transport = server.transport
        if transport is None or transport.is_closing():
            return "421 client gone"
        return await super().handle_DATA(server, session, envelope)


async def test_worker_killed_mid_batch_its_deliveries_are_sent_once(
    e2e, settings, worker, worker_env, marked_template
):
    sink = SlowSink()
    controller = Controller(sink, hostname="127.0.0.1", port=free_port())
    controller.start()
    env = {**worker_env, "HERALD_SMTP_PORT": str(controller.port)}
    try:
        with SwappableWorker(worker, env) as swapped:
            users = ["u-alice", "u-bruno", "u-chen", "u-dana", "u-emil"]
            ids, refused = await send_emails(e2e, settings, marked_template, 30, users=users)
            await eventually(lambda: _some_arrived(sink), timeout=20)
            # Transactions started together end together: kill half-way through the next ones
            # (mid-DATA, which the sink never accepts), not at the instant a wave is accepted.
            # A kill between the server's 250 and the worker's record of it is SMTP's own
            # at-least-once window, which no client can close.
            await asyncio.sleep(sink.delay / 2)
            children = _children(swapped.process.pid)
            assert children, "the worker has no pool processes"
            for pid in children:
                os.kill(pid, signal.SIGKILL)
            seen = await until_delivered(sink, ids, timeout=60)
    finally:
        controller.stop()
    line = report(
        "worker-sigkill",
        "30 emails (1 s per SMTP transaction)",
        "SIGKILL of every worker pool process mid-batch",
        ids,
        seen,
        refused=refused,
    )
    assert (line.lost, line.duplicated) == (0, 0)


async def _some_arrived(sink: SmtpSink) -> bool:
    return len(subjects(sink)) >= 3


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


@pytest.fixture
def pg_proxy() -> Iterator[TcpProxy]:
    proxy = TcpProxy(5432)
    yield proxy
    proxy.restore()


@pytest.fixture
def api_through_proxy(engine, pg_proxy) -> Iterator[Any]:
    from tests.conftest import TEST_DATABASE

    server = start_live_server(
        {
            "HERALD_DATABASE_URL": (
                f"postgresql+asyncpg://postgres@127.0.0.1:{pg_proxy.port}/{TEST_DATABASE}"
            )
        }
    )
    yield server
    stop_live_server(server)


async def test_postgresql_unavailable_is_typed_and_leaves_nothing_half_written(
    settings, engine, pg_proxy, api_through_proxy
):
    admin = token_for(settings, "admin")
    name = f"outage-{uuid.uuid4().hex[:6]}"
    create = """mutation($input: CampaignInput!) { createCampaign(input: $input) {
      __typename ... on Error { code message } } }"""
    campaign = {
        "name": name,
        "templateSlug": "welcome",
        "channels": ["EMAIL"],
        "audience": {"userIds": ["u-alice"]},
        "schedule": {"everySeconds": 3600},
    }
    async with httpx.AsyncClient(base_url=api_through_proxy.url, timeout=30) as client:

        async def call(query: str, variables: dict[str, Any]) -> dict[str, Any]:
            r = await client.post(
                "/graphql",
                json={"query": query, "variables": variables},
                headers={"Authorization": f"Bearer {admin}"},
            )
            body: dict[str, Any] = r.json()
            return body

        assert (await client.get("/readyz")).status_code == 200
        pg_proxy.cut()
        ready = await client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["failing"] == ["postgresql"]
        started = time.monotonic()
        result = (await call(create, {"input": campaign}))["data"]["createCampaign"]
        assert (result["__typename"], result["code"]) == ("UnavailableError", "UNAVAILABLE")
        assert time.monotonic() - started < 15
        template = {
            "slug": f"outage-{uuid.uuid4().hex[:6]}",
            "name": "x",
            "description": "",
            "content": [{"channel": "EMAIL", "locale": "en", "subject": "s", "body": "b"}],
        }
        made = (await call(CREATE_TEMPLATE, {"input": template}))["data"]["createTemplate"]
        assert made["code"] == "UNAVAILABLE"

        pg_proxy.restore()

        async def ready_again() -> bool:
            return (await client.get("/readyz")).status_code == 200

        await eventually(ready_again, timeout=15)
        again = (await call(CREATE_TEMPLATE, {"input": template}))["data"]["createTemplate"]
        assert again["__typename"] == "Template", again
    async with engine.connect() as conn:
        rows = (
            await conn.execute(text("SELECT count(*) FROM campaigns WHERE name = :n"), {"n": name})
        ).scalar_one()
    assert rows == 0
    FAULT_REPORTS.append(
        FaultReport(
            name="postgresql-down",
            load="createCampaign + createTemplate",
            fault="PostgreSQL unreachable (connections cut)",
            accepted=0,
            delivered=0,
            lost=0,
            duplicated=0,
            refused=2,
        )
    )


async def test_redis_restart_resyncs_subscriptions_keeps_the_schedule_and_refills_the_cache(
    e2e, settings, worker, worker_env, beat, admin
):
    """Redis restarted under the API, a worker and beat (all through a proxy: connections
    dropped, refused for 2 s, data gone): a live subscription catches up from its cursor, a
    recurring campaign runs every remaining time once, the user cache fills again."""
    from tests.conftest import TEST_REDIS_URL
    from tests.realtime.test_subscriptions import NOTIFICATIONS, Client

    # In front of the test Redis (HERALD_TEST_REDIS_URL may name a Redis of its own).
    proxy = TcpProxy(urlsplit(TEST_REDIS_URL).port or 6379)
    database = TEST_REDIS_URL.rsplit("/", 1)[-1]
    through = f"redis://127.0.0.1:{proxy.port}/{database}"
    env = {**worker_env, "HERALD_REDIS_URL": through}
    slug = f"redis-{uuid.uuid4().hex[:8]}"
    content = [{"channel": "IN_APP", "locale": "en", "title": "{{ event.id }}", "body": "Hi."}]
    made = await e2e(
        CREATE_TEMPLATE,
        {"input": {"slug": slug, "name": "R", "description": "", "content": content}},
        token=admin,
    )
    assert made["data"]["createTemplate"]["__typename"] == "Template"
    direct = redis.Redis.from_url(TEST_REDIS_URL)
    beat.stop()
    own_beat = None
    api = start_live_server({"HERALD_REDIS_URL": through})
    try:
        with SwappableWorker(worker, env):
            own_beat = Process(["beat"], env, ready="beat: Starting")
            client = await Client.open(api, token_for(settings, "user", sub="u-alice"))
            await client.subscribe(NOTIFICATIONS)
            create = """mutation($input: CampaignInput!) { createCampaign(input: $input) {
              ... on Campaign { id } } }"""
            async with httpx.AsyncClient(base_url=api.url) as http:
                r = await http.post(
                    "/graphql",
                    json={
                        "query": create,
                        "variables": {
                            "input": {
                                "name": "through a Redis restart",
                                "templateSlug": slug,
                                "channels": ["IN_APP"],
                                "audience": {"userIds": ["u-alice", "u-bruno"]},
                                "schedule": {"everySeconds": 2, "maxRuns": 4},
                            }
                        },
                    },
                    headers={"Authorization": f"Bearer {admin}"},
                )
            campaign_id = r.json()["data"]["createCampaign"]["id"]
            first = await client.next(timeout=15)
            received = [first["notifications"]["id"]]
            assert direct.exists("herald:user:u-alice")

            proxy.cut()
            direct.flushdb()
            await asyncio.sleep(2)
            proxy.restore()
            assert not direct.exists("herald:user:u-alice")

            while len(received) < 4:
                item = await client.next(timeout=20)
                received.append(item["notifications"]["id"])
            await client.nothing_within(3)
            await client.close()
            body = await e2e(
                """query($id: ID!) { campaign(id: $id) { status runs { scheduledFor
                  counts { status count } } } }""",
                {"id": campaign_id},
                token=admin,
            )
            campaign = body["data"]["campaign"]
            assert direct.exists("herald:user:u-alice")  # the cache filled again
    finally:
        if own_beat is not None:
            own_beat.stop()
        stop_live_server(api)
        beat.restart()
        proxy.restore()
        direct.close()
    runs = campaign["runs"]
    sent = [sum(c["count"] for c in r["counts"] if c["status"] == "SENT") for r in runs]
    assert len({r["scheduledFor"] for r in runs}) == 4
    assert sent == [2, 2, 2, 2]
    assert len(set(received)) == 4
    FAULT_REPORTS.append(
        FaultReport(
            name="redis-restart",
            load="a 4-run campaign to 2 users, a live subscription",
            fault="Redis connections dropped, refused 2 s, data flushed",
            accepted=8,
            delivered=sum(sent),
            lost=8 - sum(sent),
            duplicated=len(received) - len(set(received)),
        )
    )


# --- workflow runs -----------------------------------------------------------------------------

REGISTER_TYPE = """mutation($input: RegisterEventTypeInput!) { registerEventType(input: $input) {
  __typename ... on Error { code message field } } }"""
SAVE_WORKFLOW = """mutation($type: String!, $steps: JSON!) { saveWorkflow(eventType: $type,
  steps: $steps) { __typename ... on Error { code message field } } }"""
USERS = ["u-alice", "u-bruno", "u-chen", "u-dana", "u-emil"]


async def workflow_type(e2e: Any, admin: str, steps: list[dict[str, Any]]) -> str:
    """A new event type whose template's email subject (and in-app title) is the payload's
    ``mark``, with ``steps`` as its workflow: its name."""
    suffix = uuid.uuid4().hex[:8]
    slug = f"fault-wf-{suffix}"
    content = [
        {"channel": "EMAIL", "locale": "en", "subject": "{{ payload.mark }}", "body": "Hi."},
        {"channel": "IN_APP", "locale": "en", "title": "{{ payload.mark }}", "body": "Hi."},
    ]
    body = await e2e(
        CREATE_TEMPLATE,
        {"input": {"slug": slug, "name": slug, "description": "", "content": content}},
        token=admin,
    )
    assert body["data"]["createTemplate"]["__typename"] == "Template", body
    name = f"faultwf.{suffix}"
    body = await e2e(
        REGISTER_TYPE,
        {"input": {"name": name, "templateSlug": slug, "channels": ["IN_APP"]}},
        token=admin,
    )
    assert body["data"]["registerEventType"]["__typename"] == "EventType", body
    saved = await e2e(SAVE_WORKFLOW, {"type": name, "steps": steps}, token=admin)
    assert saved["data"]["saveWorkflow"]["__typename"] == "Workflow", saved
    return name


async def send_workflow_events(
    e2e: Any, settings: Any, name: str, count: int, *, concurrency: int = 8
) -> list[str]:
    """``count`` one-recipient events of the type, numbered ``n`` in their payload: their
    marks (one each, the subject of what their runs send), in the order of ``n``."""
    token = token_for(settings, "service", sub="svc-faults")
    marks = [f"wf-{n:03d}-{uuid.uuid4().hex[:8]}" for n in range(count)]
    numbers = iter(range(count))

    async def client() -> None:
        for n in numbers:
            body = await e2e(
                SEND,
                {
                    "input": {
                        "type": name,
                        "userIds": [USERS[n % len(USERS)]],
                        "payload": {"mark": marks[n], "n": n},
                    }
                },
                token=token,
            )
            assert body["data"]["sendEvent"]["__typename"] == "EventAccepted", body

    await asyncio.gather(*(client() for _ in range(concurrency)))
    return marks


async def runs_by_status(engine: Any, name: str) -> Counter[str]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT status, count(*) FROM workflow_runs WHERE event_type = :t GROUP BY 1"),
            {"t": name},
        )
        return Counter({status: count for status, count in rows})


async def steps_of_type(engine: Any, name: str) -> list[tuple[str, str, int]]:
    """(step name, status, attempts) of every step of the type's runs."""
    async with engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT s.name, s.status, s.attempts FROM workflow_run_steps s "
                "JOIN workflow_runs r ON r.id = s.run_id WHERE r.event_type = :t"
            ),
            {"t": name},
        )
        return [(n, s, a) for n, s, a in rows]


async def deliveries_by_channel(engine: Any, name: str) -> dict[str, tuple[int, int]]:
    """Per channel: (deliveries of the type, distinct (user, step event) among them)."""
    async with engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT channel, count(*), count(DISTINCT (user_id, event_id)) FROM deliveries "
                "WHERE event_type = :t GROUP BY channel"
            ),
            {"t": name},
        )
        return {channel: (count, distinct) for channel, count, distinct in rows}


def kill_worker(process: Process) -> None:
    """SIGKILL the worker and its pool processes: nothing shuts down, nothing is flushed."""
    for pid in [*_children(process.process.pid), process.process.pid]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    process.process.wait(10)


async def test_runs_waiting_in_a_delay_survive_a_rabbitmq_restart_and_a_killed_worker(
    e2e, settings, worker, worker_env, beat, admin, engine
):
    """20 runs (in-app, a 6 s delay, an email) wait in their delay when the worker is killed
    and RabbitMQ stopped for 3 s; a new worker takes them up when the delay is over: each
    email goes out once, no step runs twice."""
    if not (shutil.which("rabbitmqctl") or os.path.exists("/usr/sbin/rabbitmqctl")):
        pytest.fail("rabbitmqctl is needed to restart RabbitMQ")
    name = await workflow_type(
        e2e,
        admin,
        [
            {"type": "send", "name": "inapp", "channel": "in_app"},
            {"type": "delay", "name": "wait", "duration": "6s"},
            {"type": "send", "name": "email", "channel": "email"},
        ],
    )
    sink = SmtpSink()
    controller = Controller(sink, hostname="127.0.0.1", port=free_port())
    controller.start()
    env = {**worker_env, "HERALD_SMTP_PORT": str(controller.port)}
    swapped = SwappableWorker(worker, env)
    try:
        with swapped as process:
            marks = await send_workflow_events(e2e, settings, name, 20)

            async def all_waiting() -> bool:
                return (await runs_by_status(engine, name))["waiting"] == 20

            await eventually(all_waiting, timeout=20, interval=0.2)
            kill_worker(process)
            await asyncio.to_thread(_rabbitmqctl, "stop_app")
            await asyncio.sleep(3)
            await asyncio.to_thread(_rabbitmqctl, "start_app")
            assert subjects(sink) == Counter()  # nothing was sent before the delay ended
            swapped.process = Process(["worker", "--concurrency", "2"], env, ready="ready.")
            seen = await until_delivered(sink, marks, timeout=90)

            async def all_completed() -> bool:
                return (await runs_by_status(engine, name)) == Counter({"completed": 20})

            await eventually(all_completed, timeout=20)
    finally:
        controller.stop()
    line = report(
        "workflow-delay",
        "20 workflow runs waiting in a 6 s delay (in-app, delay, email)",
        "worker SIGKILLed and RabbitMQ stopped 3 s while the runs wait",
        marks,
        seen,
    )
    assert (line.accepted, line.lost, line.duplicated) == (20, 0, 0)
    steps = await steps_of_type(engine, name)
    assert sorted(steps) == sorted(
        [("inapp", "done", 1), ("wait", "done", 1), ("email", "done", 1)] * 20
    )
    assert await deliveries_by_channel(engine, name) == {"in_app": (20, 20), "email": (20, 20)}


async def test_runs_mid_branch_survive_a_worker_killed_mid_batch(
    e2e, settings, worker, worker_env, beat, admin, engine
):
    """30 runs (in-app, a branch on the payload, an email on one arm) go through a worker
    whose pool processes are SIGKILLed while emails are mid-transaction (1 s each): each run
    completes, the runs on the email arm send it once, the others none. The worker holds a
    run (and a delivery) 5 s here instead of 60, for the next one to take them over sooner."""
    name = await workflow_type(
        e2e,
        admin,
        [
            {"type": "send", "name": "inapp", "channel": "in_app"},
            {
                "type": "branch",
                "name": "pick",
                "condition": "payload.n % 3 != 0",
                "then": [{"type": "send", "name": "email", "channel": "email"}],
            },
        ],
    )
    sink = SlowSink()
    controller = Controller(sink, hostname="127.0.0.1", port=free_port())
    controller.start()
    env = {
        **worker_env,
        "HERALD_SMTP_PORT": str(controller.port),
        "HERALD_WORKFLOW_RUN_LEASE_SECONDS": "5",
        "HERALD_DELIVERY_LEASE_SECONDS": "5",
    }
    try:
        with SwappableWorker(worker, env) as swapped:
            marks = await send_workflow_events(e2e, settings, name, 30)
            emailed = [m for n, m in enumerate(marks) if n % 3 != 0]
            await eventually(lambda: _some_arrived(sink), timeout=30)
            await asyncio.sleep(sink.delay / 2)  # mid-DATA, as in the drill above
            before_kill = len(subjects(sink))
            children = _children(swapped.process.pid)
            assert children, "the worker has no pool processes"
            for pid in children:
                os.kill(pid, signal.SIGKILL)
            seen = await until_delivered(sink, emailed, timeout=120)

            async def all_completed() -> bool:
                return (await runs_by_status(engine, name)) == Counter({"completed": 30})

            await eventually(all_completed, timeout=30)
    finally:
        controller.stop()
    line = report(
        "workflow-branch",
        "30 workflow runs (in-app, branch, email on one arm; 1 s per SMTP transaction)",
        "SIGKILL of every worker pool process mid-batch",
        emailed,
        seen,
    )
    assert (line.accepted, line.lost, line.duplicated) == (20, 0, 0)
    assert before_kill < 20, "the kill came after every email was out"
    # The other arm's runs sent no email.
    others = [m for n, m in enumerate(marks) if n % 3 == 0]
    assert [m for m in others if seen[m]] == []
    steps = Counter((n, s) for n, s, _ in await steps_of_type(engine, name))
    assert steps == Counter({("inapp", "done"): 30, ("pick", "done"): 30, ("email", "done"): 20})
    assert await deliveries_by_channel(engine, name) == {"in_app": (30, 30), "email": (20, 20)}
