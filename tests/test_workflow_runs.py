"""The run engine through the worker's own units of work, committed for real in PostgreSQL
(history, inbox, runs) with Redis: fetch against a real local HTTP server, delays until a
payload time, throttle and digest steps, and a condition that fails at run time."""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import redis.asyncio as redis_async
from fastapi import FastAPI, Request, Response
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.auth import Principal
from backend.channels import Channel
from backend.config import Settings
from backend.db.history.base import DeliveryStatus
from backend.db.models import EventType, InboxItem, Template, WorkflowRun
from backend.db.repositories.workflows import WorkflowRunRepository, WorkflowStepRepository
from backend.db.session import create_sessionmaker
from backend.services import task_messages, workflows
from backend.services.deliveries import DeliveryContext, Envelope
from backend.services.deliveries.records import delivery_id
from backend.services.users import UserProfile
from backend.workers import units
from tests.factories import delivery_context
from tests.processes import ThreadedServer

ACTOR = Principal(user_id="wf-tests", roles=frozenset({"admin"}))


class Published:
    """Task messages the units hand on (a run's advance), kept instead of published."""

    def __init__(self) -> None:
        self.messages: list[task_messages.TaskMessage] = []

    async def enqueue_send(self, message: task_messages.TaskMessage) -> None:
        self.messages.append(message)

    async def enqueue_dispatch(self, envelope: Envelope) -> None:
        raise AssertionError("no dispatch parts expected")


class Directory:
    """Profiles of the users these tests send to, as the auth service would answer."""

    async def get_many(self, user_ids: Sequence[str]) -> dict[str, UserProfile | None]:
        return {
            u: UserProfile(id=u, first_name="Ada", email=None, timezone="Europe/Paris")
            for u in user_ids
        }


@pytest.fixture
def published() -> Published:
    return Published()


@pytest.fixture
def ctx(
    settings: Settings, engine: AsyncEngine, redis: redis_async.Redis, published: Published
) -> DeliveryContext:
    # Runs are handed on (kept in ``published``), to be advanced step by step here.
    settings = settings.model_copy(update={"workflow_inline_runs": 0})
    return delivery_context(settings, engine, redis, queue=published, users=Directory())


class Provider:
    """A real HTTP server for fetch steps: what it was asked, and what it answers."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, bytes]] = []
        self.failures_left = 0
        app = FastAPI()

        @app.api_route("/{path:path}", methods=["GET", "POST"])
        async def answer(path: str, request: Request) -> Response:
            self.requests.append((request.method, "/" + path, await request.body()))
            if path.startswith("flaky") and self.failures_left > 0:
                self.failures_left -= 1
                return Response(status_code=503)
            if path.startswith("big"):
                return Response(b'{"x": "' + b"a" * 5000 + b'"}', media_type="application/json")
            return Response(b'{"vip": true, "tier": "gold"}', media_type="application/json")

        self.app = app


@pytest.fixture
def provider() -> Iterator[tuple[Provider, str]]:
    p = Provider()
    with ThreadedServer(p.app) as server:
        yield p, server.url


async def save(
    ctx: DeliveryContext, steps: list[dict[str, Any]], *, body: str = "{{ payload.item }}"
) -> tuple[str, str]:
    """A committed in-app template and event type with ``steps`` as its workflow: (type, id)."""
    suffix = uuid.uuid4().hex[:8]
    async with ctx.sessionmaker() as session:
        session.add(
            Template(
                slug=f"wfr-{suffix}",
                name="wfr",
                content=[{"channel": "in_app", "locale": "en", "title": "T", "body": body}],
            )
        )
        row = EventType(name=f"wfr.{suffix}", template_slug=f"wfr-{suffix}", channels=["in_app"])
        session.add(row)
        await session.flush()
        saved = await workflows.save_workflow(
            session,
            actor=ACTOR,
            data=workflows.WorkflowData(event_type=row.name, steps=steps),
        )
        await session.commit()
        return row.name, str(saved.id)


def envelope(event_type: str, workflow_id: str, users: Sequence[str], payload: Any) -> Envelope:
    return Envelope(
        id=str(uuid.uuid4()),
        type=event_type,
        user_ids=tuple(users),
        template_slug=f"wfr-{event_type.split('.')[1]}",
        channels=(Channel.IN_APP,),
        payload=payload,
        created_at=datetime.now(UTC).isoformat(),
        workflow_id=workflow_id,
    )


async def start(ctx: DeliveryContext, published: Published, env: Envelope) -> list[str]:
    """Dispatch as the worker does: the runs it started, from the advance messages (a batch
    of runs each)."""
    before = len(published.messages)
    await units.dispatch(ctx, env)
    return [r for m in published.messages[before:] for r in m.args[0]]


async def run_row(engine: AsyncEngine, run_id: str) -> WorkflowRun:
    maker = create_sessionmaker(engine)
    async with maker() as session:
        row = await session.get(WorkflowRun, uuid.UUID(run_id))
        assert row is not None
        return row


async def inbox_bodies(engine: AsyncEngine, event_type: str) -> list[str | None]:
    async with engine.connect() as conn:
        rows = await conn.execute(select(InboxItem.body).where(InboxItem.event_type == event_type))
        return [r[0] for r in rows]


async def test_fetched_json_joins_the_context_of_later_steps(
    ctx, published, engine, provider
) -> None:
    server, url = provider
    server.failures_left = 1  # the first call fails: the step retries
    name, workflow_id = await save(
        ctx,
        [
            {
                "type": "fetch",
                "name": "profile",
                "url": url + "/flaky/{{ user.id }}?item={{ payload.item }}",
                "retries": 2,
                "timeout": 2,
            },
            {
                "type": "send",
                "name": "vip",
                "channel": "in_app",
                "if": "steps.profile.data.vip and steps.profile.status == 'ok'",
            },
            {"type": "fetch", "name": "huge", "url": url + "/big", "maxBytes": 1000, "retries": 0},
        ],
        body="{{ payload.steps.profile.data.tier }} {{ payload.item }}",
    )
    (run_id,) = await start(ctx, published, envelope(name, workflow_id, ["wf-u1"], {"item": "7"}))
    async with httpx.AsyncClient() as http:
        advanced = await units.advance_workflow_run(ctx, run_id=run_id, http=http)
    assert advanced.status == "completed" and advanced.steps == 3
    assert server.requests[:2] == [
        ("GET", "/flaky/wf-u1", b""),
        ("GET", "/flaky/wf-u1", b""),
    ]
    row = await run_row(engine, run_id)
    assert row.context["steps"]["profile"]["data"] == {"vip": True, "tier": "gold"}
    assert row.context["steps"]["vip"]["channels"] == {"in_app": "sent"}
    # An answer over maxBytes fails the step, not the run.
    assert row.context["steps"]["huge"]["status"] == "failed"
    assert "larger than 1000 bytes" in row.context["steps"]["huge"]["error"]
    assert await inbox_bodies(engine, name) == ["gold 7"]


async def test_a_delay_until_a_payload_time_waits_and_the_sweep_releases_it(
    ctx, published, engine
) -> None:
    name, workflow_id = await save(
        ctx,
        [
            {"type": "delay", "name": "before", "until": "payload.appointment_at", "offset": "-1h"},
            {"type": "send", "name": "remind", "channel": "in_app"},
        ],
    )
    appointment = datetime.now(UTC) + timedelta(hours=2)
    payload = {"item": "dentist", "appointment_at": appointment.isoformat()}
    (run_id,) = await start(ctx, published, envelope(name, workflow_id, ["wf-u2"], payload))
    advanced = await units.advance_workflow_run(ctx, run_id=run_id, http=None)
    assert advanced.status == "waiting"
    row = await run_row(engine, run_id)
    assert row.status == "waiting" and row.cursor == "1"
    assert row.due_at is not None
    assert abs((row.due_at - (appointment - timedelta(hours=1))).total_seconds()) < 1
    # Not due yet: a message for it (a duplicate) does nothing.
    assert (await units.advance_workflow_run(ctx, run_id=run_id, http=None)).status == ""
    # Its time comes (moved here, rather than waited for): it goes on to the send.
    async with engine.begin() as conn:
        await conn.execute(
            text("UPDATE workflow_runs SET due_at = now() - interval '1 second' WHERE id = :i"),
            {"i": run_id},
        )
    advanced = await units.advance_workflow_run(ctx, run_id=run_id, http=None)
    assert advanced.status == "completed"
    assert await inbox_bodies(engine, name) == ["dentist"]


def test_a_time_of_day_is_the_next_one_in_the_users_zone() -> None:
    now = datetime(2026, 3, 1, 7, 30, tzinfo=UTC)  # 08:30 in Paris
    assert workflows.next_time_of_day("09:00", "Europe/Paris", now) == datetime(
        2026, 3, 1, 8, 0, tzinfo=UTC
    )
    assert workflows.next_time_of_day("08:00", "Europe/Paris", now) == datetime(
        2026, 3, 2, 7, 0, tzinfo=UTC
    )
    assert workflows.next_time_of_day("08:00", "Nowhere/Else", now) == datetime(
        2026, 3, 1, 8, 0, tzinfo=UTC
    )


async def test_a_throttle_step_stops_runs_past_its_limit(ctx, published, engine) -> None:
    name, workflow_id = await save(
        ctx,
        [
            {"type": "throttle", "name": "once", "limit": 1, "window": "1h"},
            {"type": "send", "name": "s", "channel": "in_app"},
        ],
    )
    statuses = []
    for n in range(2):
        (run_id,) = await start(
            ctx, published, envelope(name, workflow_id, ["wf-u3"], {"item": str(n)})
        )
        statuses.append((await units.advance_workflow_run(ctx, run_id=run_id, http=None)).status)
    assert statuses == ["completed", "stopped"]
    assert await inbox_bodies(engine, name) == ["0"]


async def test_a_digest_step_collects_a_users_runs_into_one_message(ctx, published, engine) -> None:
    name, workflow_id = await save(
        ctx,
        [
            {"type": "digest", "name": "batch", "window": "1s"},
            {"type": "send", "name": "s", "channel": "in_app"},
        ],
        body=(
            "{{ payload.digest.count }}:"
            "{% for e in payload.digest.events %}{{ e.item }}{% endfor %}"
        ),
    )
    runs = []
    for item in "abc":
        (run_id,) = await start(
            ctx, published, envelope(name, workflow_id, ["wf-u4"], {"item": item})
        )
        runs.append(run_id)
        await units.advance_workflow_run(ctx, run_id=run_id, http=None)
    first, *others = [await run_row(engine, r) for r in runs]
    assert first.status == "waiting"
    assert [r.status for r in others] == ["stopped", "stopped"]
    # The window ends 1 s after the first run's event; a busy machine may take a little longer
    # before the run is due (nothing is taken before then: the advance is a no-op, status "").
    deadline = time.monotonic() + 10
    await asyncio.sleep(1.1)
    while (
        advanced := await units.advance_workflow_run(ctx, run_id=runs[0], http=None)
    ).status == "":
        assert time.monotonic() < deadline, "the digest run never became due"
        await asyncio.sleep(0.2)
    assert advanced.status == "completed"
    assert await inbox_bodies(engine, name) == ["3:abc"]


async def test_a_condition_that_fails_at_run_time_fails_the_run_naming_the_step(
    ctx, published, engine
) -> None:
    name, workflow_id = await save(
        ctx, [{"type": "send", "name": "s", "channel": "in_app", "if": "payload.missing > 1"}]
    )
    (run_id,) = await start(ctx, published, envelope(name, workflow_id, ["wf-u5"], {"item": "x"}))
    advanced = await units.advance_workflow_run(ctx, run_id=run_id, http=None)
    assert advanced.status == "failed"
    row = await run_row(engine, run_id)
    assert row.error is not None and "step 's'" in row.error and "payload.missing" in row.error
    assert await inbox_bodies(engine, name) == []


async def test_an_event_with_few_runs_takes_them_through_their_first_steps_itself(
    ctx, published, engine
) -> None:
    name, workflow_id = await save(ctx, [{"type": "send", "name": "s", "channel": "in_app"}])
    inline = dataclasses.replace(
        ctx, settings=ctx.settings.model_copy(update={"workflow_inline_runs": 2})
    )
    before = len(published.messages)
    await units.dispatch(inline, envelope(name, workflow_id, ["wf-u6", "wf-u7"], {"item": "i"}))
    assert len(published.messages) == before  # nothing handed on
    assert sorted(await inbox_bodies(engine, name)) == ["i", "i"]
    # More runs than that: they are handed on, to a task of their own.
    runs = await start(ctx, published, envelope(name, workflow_id, ["wf-u8"], {"item": "j"}))
    assert len(runs) == 1 and (await run_row(engine, runs[0])).status == "queued"


async def test_a_step_cut_short_by_a_dead_worker_is_run_again_and_sends_nothing_twice(
    ctx, published, engine
) -> None:
    name, workflow_id = await save(
        ctx,
        [
            {"type": "send", "name": "s", "channel": "in_app"},
            {"type": "send", "name": "t", "channel": "in_app"},
        ],
    )
    (run_id,) = await start(ctx, published, envelope(name, workflow_id, ["wf-u9"], {"item": "k"}))
    ident = uuid.UUID(run_id)
    # A worker leased the run, claimed its first step, sent it, and died before marking it
    # done: the run is `running` under a lease that has run out, the step `running`.
    now = datetime.now(UTC)
    maker = create_sessionmaker(engine)
    async with maker() as session:
        await WorkflowRunRepository(session).lease(ident, now=now, until=now)
        await WorkflowStepRepository(session).claim(
            run_id=ident, path="0", name="s", kind="send", now=now
        )
        await session.commit()
    sent = Envelope(
        id=workflows.step_event_id(ident, "0"),
        type=name,
        user_ids=("wf-u9",),
        template_slug=f"wfr-{name.split('.')[1]}",
        channels=(Channel.IN_APP,),
        payload={"item": "k", "steps": {}},
    )
    await units.dispatch(ctx, sent)
    assert await inbox_bodies(engine, name) == ["k"]
    # The release sweep finds it (its lease is over) ...
    async with maker() as session:
        due = await WorkflowRunRepository(session).due(
            datetime.now(UTC), 500, lost_before=now - timedelta(hours=1)
        )
        await session.commit()
    assert ident in due
    # ... and the next worker runs the step again (a second attempt), which sends nothing new.
    advanced = await units.advance_workflow_run(ctx, run_id=run_id, http=None)
    assert advanced.status == "completed"
    async with maker() as session:
        steps = {s.path: s for s in await WorkflowStepRepository(session).of_run(ident)}
    assert (steps["0"].attempts, steps["0"].status) == (2, "done")
    assert (steps["1"].attempts, steps["1"].status) == (1, "done")
    assert await inbox_bodies(engine, name) == ["k", "k"]  # one per step, none twice


async def test_runs_of_one_user_at_a_throttle_at_once_pass_it_only_up_to_its_limit(
    ctx, published, engine
) -> None:
    name, workflow_id = await save(
        ctx,
        [
            {"type": "throttle", "name": "once", "limit": 1, "window": "1h"},
            {"type": "send", "name": "s", "channel": "in_app"},
        ],
    )
    runs = []
    for n in range(4):
        runs += await start(
            ctx, published, envelope(name, workflow_id, ["wf-u10"], {"item": str(n)})
        )
    # Four workers reach the throttle at the same moment.
    advanced = await asyncio.gather(
        *(units.advance_workflow_run(ctx, run_id=r, http=None) for r in runs)
    )
    assert sorted(a.status for a in advanced) == ["completed", "stopped", "stopped", "stopped"]
    assert len(await inbox_bodies(engine, name)) == 1


async def test_a_user_reached_through_a_topic_they_opted_out_of_gets_no_workflow_send(
    ctx, published, engine
) -> None:
    name, workflow_id = await save(ctx, [{"type": "send", "name": "s", "channel": "in_app"}])
    topic = f"wfr-topic-{uuid.uuid4().hex[:8]}"
    out, stays = f"{topic}-out", f"{topic}-in"
    async with engine.begin() as conn:
        await conn.execute(text("INSERT INTO topics (key, name) VALUES (:k, :k)"), {"k": topic})
        await conn.execute(
            text("INSERT INTO topic_members (topic_key, user_id) VALUES (:k, :u)"),
            [{"k": topic, "u": out}, {"k": topic, "u": stays}],
        )
        await conn.execute(
            text(
                "INSERT INTO user_preferences "
                "(user_id, disabled_channels, disabled_event_types, disabled_topics) "
                "VALUES (:u, '{}', '{}', :t)"
            ),
            {"u": out, "t": [topic]},
        )
    try:
        # A topic page's members part, as dispatch hands it on (see test_topics).
        part = dataclasses.replace(
            envelope(name, workflow_id, [out, stays], {"item": "news"}),
            topics=(topic,),
            via_topics=True,
            part=0,
        )
        for run_id in await start(ctx, published, part):
            advanced = await units.advance_workflow_run(ctx, run_id=run_id, http=None)
            assert advanced.status == "completed"
        records = {}
        for user in (out, stays):
            run_id = workflows.run_id_of(part.id, user)
            step_event = workflows.step_event_id(run_id, "0")
            records[user] = await ctx.history.get(delivery_id(step_event, user, Channel.IN_APP))
        skipped, sent = records[out], records[stays]
        assert skipped is not None and skipped.status is DeliveryStatus.SKIPPED
        assert topic in (skipped.timeline[0].reason or "")
        assert sent is not None and sent.status is DeliveryStatus.SENT
        assert await inbox_bodies(engine, name) == ["news"]
    finally:
        async with engine.begin() as conn:
            await conn.execute(text("DELETE FROM topics WHERE key = :k"), {"k": topic})
            await conn.execute(text("DELETE FROM user_preferences WHERE user_id = :u"), {"u": out})


async def test_a_step_is_claimed_only_while_its_run_is_running_and_the_step_not_done(
    ctx, published, engine
) -> None:
    name, workflow_id = await save(ctx, [{"type": "send", "name": "s", "channel": "in_app"}])
    (run_id,) = await start(ctx, published, envelope(name, workflow_id, ["wf-u11"], {"item": "c"}))
    ident = uuid.UUID(run_id)
    now = datetime.now(UTC)
    until = now + timedelta(minutes=1)
    maker = create_sessionmaker(engine)

    async def claim() -> tuple[Any, str | None]:
        async with maker() as session:
            repo = WorkflowStepRepository(session)
            claimed = await repo.hold_and_claim(
                run_id=ident, path="0", name="s", kind="send", now=now, until=until
            )
            refused = await repo.claim_refused(run_id=ident) if claimed is None else None
            await session.commit()
            return claimed, refused

    # Queued, not leased by a worker: not running, so nothing is claimed.
    assert await claim() == (None, "cancelled")
    async with maker() as session:
        await WorkflowRunRepository(session).lease(ident, now=now, until=now)
        await session.commit()
    first, _ = await claim()
    again, _ = await claim()  # a worker that died left it running: claimed again, counted
    assert (first.attempts, again.attempts) == (1, 2)
    assert (await run_row(engine, run_id)).leased_until == until
    async with engine.begin() as conn:
        await conn.execute(
            text("UPDATE workflow_run_steps SET status = 'done' WHERE run_id = :i"), {"i": ident}
        )
    assert await claim() == (None, "duplicate")
    async with maker() as session:
        assert await WorkflowRunRepository(session).cancel(now=now, user_ids=["wf-u11"]) == 1
        await session.commit()
    assert await claim() == (None, "cancelled")


async def test_runs_advanced_side_by_side_each_go_their_own_way_once(
    ctx, published, engine
) -> None:
    """A batch of runs through a send, a branch on the payload and a send on one arm, in one
    call: each run takes its own arm, each step runs once, and a run cancelled before the
    batch reached it is left alone."""
    name, workflow_id = await save(
        ctx,
        [
            {"type": "send", "name": "hello", "channel": "in_app"},
            {
                "type": "branch",
                "name": "big",
                "condition": "payload.item == 'big'",
                "then": [{"type": "send", "name": "more", "channel": "in_app"}],
            },
        ],
    )
    runs = []
    for user, item in (("wf-b1", "big"), ("wf-b2", "small"), ("wf-b3", "big")):
        runs += await start(ctx, published, envelope(name, workflow_id, [user], {"item": item}))
    maker = create_sessionmaker(engine)
    async with maker() as session:
        now = datetime.now(UTC)
        assert await WorkflowRunRepository(session).cancel(now=now, user_ids=["wf-b3"]) == 1
        await session.commit()
    advanced = await units.advance_workflow_runs(ctx, run_ids=runs, http=None)
    assert [(advanced[r].status, advanced[r].steps) for r in runs] == [
        ("completed", 3),
        ("completed", 2),
        ("", 0),
    ]
    assert sorted(await inbox_bodies(engine, name)) == ["big", "big", "small"]
    steps = {}
    for run_id in runs:
        async with maker() as session:
            steps[run_id] = [
                (s.name, s.status, s.attempts)
                for s in await WorkflowStepRepository(session).of_run(uuid.UUID(run_id))
            ]
    assert sorted(steps[runs[0]]) == [("big", "done", 1), ("hello", "done", 1), ("more", "done", 1)]
    assert sorted(steps[runs[1]]) == [("big", "done", 1), ("hello", "done", 1)]
    assert steps[runs[2]] == []
    assert (await run_row(engine, runs[1])).context["steps"]["big"]["arm"] == "else"
    # A second message for the same runs (a duplicate) does nothing.
    again = await units.advance_workflow_runs(ctx, run_ids=runs, http=None)
    assert {a.status for a in again.values()} == {""}
    assert len(await inbox_bodies(engine, name)) == 3


async def test_a_redelivered_dispatch_takes_over_the_runs_its_dead_worker_held(
    ctx, published, engine
) -> None:
    """The worker that dispatched an event committed its runs, leased them for their first
    steps and died: the dispatch message comes back (redelivered), and its new worker takes
    the runs through at once instead of waiting for the lease to run out."""
    name, workflow_id = await save(ctx, [{"type": "send", "name": "s", "channel": "in_app"}])
    inline = dataclasses.replace(
        ctx, settings=ctx.settings.model_copy(update={"workflow_inline_runs": 5})
    )
    event = envelope(name, workflow_id, ["wf-r1", "wf-r2"], {"item": "r"})
    maker = create_sessionmaker(engine)
    async with maker() as session:
        started = await workflows.start_runs(session, event)
        now = datetime.now(UTC)
        for run_id in started:  # leased by the worker that died, for a minute more
            leased = await WorkflowRunRepository(session).lease(
                uuid.UUID(run_id), now=now, until=now + timedelta(minutes=1)
            )
            assert leased is not None
        await session.commit()
    # A second copy of the message that is not a redelivery leaves the held runs alone ...
    await units.dispatch(inline, event)
    assert await inbox_bodies(engine, name) == []
    # ... the redelivered one takes them over.
    await units.dispatch(inline, event, redelivered=True)
    assert await inbox_bodies(engine, name) == ["r", "r"]
    assert {(await run_row(engine, r)).status for r in started} == {"completed"}
