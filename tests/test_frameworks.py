"""The adapters over frameworks' private APIs (backend/frameworks/), and what Herald relies on
of a library's insides, run against the installed libraries: an upgrade that moves what one of
them reads fails here."""

from __future__ import annotations

import asyncio
import importlib.abc
import inspect
import multiprocessing
import os
import sys
import time
from collections.abc import AsyncGenerator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import pytest
import strawberry
import websockets
from graphql import GraphQLError, GraphQLSchema, graphql_sync, parse, validate
from graphql import execute as graphql_execute
from httpcore._synchronization import current_async_library
from jinja2 import DictLoader, nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment
from redbeat import RedBeatScheduler
from redis._parsers.hiredis import _AsyncHiredisParser
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker
from starlette.websockets import WebSocket
from strawberry.schema.config import StrawberryConfig
from strawberry.types.graphql import OperationType
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from backend.db.session import create_sessionmaker
from backend.frameworks.jinja_parsing import TransformedParse
from backend.frameworks.process_pools import kill_pool_processes
from backend.frameworks.redbeat_scheduling import maybe_due_kwargs
from backend.frameworks.sqlalchemy_sessions import sessionmaker_bind
from backend.frameworks.strawberry_internals import (
    DEFAULT_ALLOWED_OPERATION_TYPES,
    MaskErrorsWithHook,
    await_maybe,
    execute_kwargs,
    graphql_core_schema,
    log_errors,
)
from backend.frameworks.uvicorn_sockets import release_uvicorn_handshake, uvicorn_protocol
from backend.schema.root import build_schema
from backend.services.rendering import _HeraldSandbox
from tests.processes import ThreadedServer

# --- uvicorn ------------------------------------------------------------------------------


def handshake_probe(seen: dict[str, Any]) -> Any:
    """An ASGI app whose socket reports what the adapters see of uvicorn's protocol, then
    echoes. Its WebSocket is built straight on uvicorn's ``send``, as Herald's GraphQL socket
    is (backend/app.py ``HeraldAPI``): middleware would wrap ``send`` in a function of its own.
    """

    async def app(scope: Any, receive: Any, send: Any) -> None:
        socket = WebSocket(scope, receive, send)
        protocol = uvicorn_protocol(socket)
        seen["protocol"] = protocol
        seen["released before the accept"] = release_uvicorn_handshake(socket)
        await socket.accept()
        request, response = protocol.request, protocol.response
        seen["probe header"] = request.headers.get("X-Probe")
        seen["response status"] = response.status_code
        seen["released"] = release_uvicorn_handshake(socket)
        seen["after"] = (protocol.request, protocol.response)
        seen["headers left"] = (len(request.headers), len(response.headers))
        await socket.send_text(await socket.receive_text())
        await socket.close()

    return app


async def test_the_handshake_is_released_from_uvicorns_protocol() -> None:
    seen: dict[str, Any] = {}
    # The WebSocket implementation `herald api` runs (backend/cli.py).
    with ThreadedServer(handshake_probe(seen), ws="websockets-sansio") as server:
        url = server.url.replace("http://", "ws://") + "/ws"
        async with websockets.connect(url, additional_headers={"X-Probe": "yes"}) as client:
            await client.send("still open")
            assert await asyncio.wait_for(client.recv(), 5) == "still open"

    assert isinstance(seen["protocol"], WebSocketsSansIOProtocol)
    assert seen["released before the accept"] is False
    assert (seen["probe header"], seen["response status"]) == ("yes", 101)
    assert seen["released"] is True
    assert seen["after"] == (None, None)
    assert seen["headers left"] == (0, 0)


# --- Strawberry ---------------------------------------------------------------------------


@strawberry.type
class Query:
    @strawberry.field
    def greeting(self, name: str) -> str:
        return f"Hello {name}"

    @strawberry.field
    def broken(self) -> int:
        raise ValueError("a secret")

    @strawberry.field
    async def later(self, info: strawberry.Info) -> str:
        return f"later, with {info.context['who']}"


@strawberry.type
class Subscription:
    @strawberry.subscription
    async def ticks(self) -> AsyncGenerator[int, None]:
        yield 1
        raise ValueError("a secret")


class MarkMasked(MaskErrorsWithHook):
    """Masks every error, then marks what it handed on."""

    def after_masking(self, errors: list[GraphQLError]) -> list[GraphQLError]:
        for error in errors:
            error.extensions = {"code": "MARKED"}
        return errors


def masked(errors: list[GraphQLError] | None) -> list[tuple[str, Any]]:
    return [(error.message, error.extensions) for error in errors or []]


UNEXPECTED = [("Unexpected error.", {"code": "MARKED"})]


def test_graphql_core_schema_is_the_schema_strawberry_executes() -> None:
    schema = strawberry.Schema(Query)

    core = graphql_core_schema(schema)

    assert isinstance(core, GraphQLSchema)
    # graphql-core alone runs Strawberry's resolvers on it.
    result = graphql_sync(core, '{ greeting(name: "Ann") }')
    assert (result.data, result.errors) == ({"greeting": "Hello Ann"}, None)


def test_graphql_core_schema_of_herald_schema_has_its_roots() -> None:
    core = graphql_core_schema(build_schema())

    assert core.query_type is not None and "deliveries" in core.query_type.fields
    assert core.subscription_type is not None
    assert "notifications" in core.subscription_type.fields


async def test_the_hook_sees_every_result_after_masking() -> None:
    schema = strawberry.Schema(Query, subscription=Subscription, extensions=[MarkMasked])

    assert masked((await schema.execute("{ broken }")).errors) == UNEXPECTED
    assert masked(schema.execute_sync("{ broken }").errors) == UNEXPECTED
    stream: Any = await schema.subscribe("subscription { ticks }")
    results = [result async for result in stream]
    assert [(r.data, masked(r.errors)) for r in results] == [({"ticks": 1}, []), (None, UNEXPECTED)]


def test_mask_treats_errors_raised_outside_an_operation_the_same() -> None:
    errors = MarkMasked().mask([GraphQLError("a secret", original_error=KeyError())])

    assert masked(errors) == UNEXPECTED


async def test_execute_kwargs_let_graphql_core_run_strawberrys_resolvers() -> None:
    schema = strawberry.Schema(Query)

    kwargs = execute_kwargs(schema, {"tracing": True})

    assert kwargs["operation_extensions"] == {"tracing": True}
    assert kwargs["executor_class"] is schema.execution_context_class

    # Strawberry's execution context class takes the operation's extensions; graphql-core's
    # own would refuse them, and without Strawberry's awaitable test `later` would not run.
    result = await await_maybe(
        graphql_execute(
            graphql_core_schema(schema),
            parse('{ greeting(name: "Ann") later }'),
            context_value={"who": "Bo"},
            **kwargs,
        )
    )
    assert (result.data, result.errors) == (
        {"greeting": "Hello Ann", "later": "later, with Bo"},
        None,
    )


def test_log_errors_drops_suggestions_and_hands_the_errors_to_process_errors() -> None:
    seen: list[str] = []

    class Recording(strawberry.Schema):
        def process_errors(self, errors: list[GraphQLError], execution_context: Any = None):
            seen.extend(error.message for error in errors)

    schema = Recording(Query, config=StrawberryConfig(disable_field_suggestions=True))
    errors = list(validate(graphql_core_schema(schema), parse("{ greetin }")))
    assert "Did you mean" in errors[0].message

    log_errors(schema, errors, None)

    assert seen == ["Cannot query field 'greetin' on type 'Query'."]


def test_by_default_an_operation_of_every_type_is_allowed() -> None:
    assert set(DEFAULT_ALLOWED_OPERATION_TYPES) == set(OperationType)


# --- SQLAlchemy ---------------------------------------------------------------------------


async def test_sessionmaker_bind_is_the_engine_its_sessions_use(engine: AsyncEngine) -> None:
    maker = create_sessionmaker(engine)

    assert sessionmaker_bind(maker) is engine
    async with maker() as session:
        assert session.bind is engine
        assert (await session.execute(text("SELECT 1"))).scalar_one() == 1


async def test_sessionmaker_bind_is_the_connection_a_test_binds(
    sessionmaker: async_sessionmaker[AsyncSession], connection: AsyncConnection
) -> None:
    assert sessionmaker_bind(sessionmaker) is connection


# --- Jinja2 -------------------------------------------------------------------------------


def test_every_way_to_a_template_goes_through_the_transformed_parse() -> None:
    class Counting(TransformedParse):
        def __init__(self) -> None:
            super().__init__(loader=DictLoader({"page": "{{ 2 }}"}))
            self.seen: list[str] = []

        def transform(self, tree: nodes.Template) -> nodes.Template:
            self.seen.append(type(tree).__name__)
            # Rewrite every constant, to prove the rendered template is the transformed tree.
            for const in tree.find_all(nodes.Const):
                const.value = 7
            return tree

    env = Counting()
    assert env.from_string("{{ 1 }}").render() == "7"
    assert env.get_template("page").render() == "7"
    env.parse("{{ 3 }}")
    env.compile("{{ 4 }}")
    assert env.seen == ["Template"] * 4


def test_the_herald_sandbox_still_instruments_what_it_parses() -> None:
    """The sandbox's step and size guards are put in by the transformed parse."""
    plain = ImmutableSandboxedEnvironment().compile("{% for i in x %}{{ i }}{% endfor %}", raw=True)
    guarded = _HeraldSandbox().compile("{% for i in x %}{{ i }}{% endfor %}", raw=True)
    assert "_herald_" not in plain
    assert "_herald_body" in guarded


# --- concurrent.futures -------------------------------------------------------------------


def _sleep(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def _gone(pid: int | None, within: float) -> bool:
    """Whether no process with this pid is left (reaped, not a zombie) within the time."""
    assert pid is not None
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def test_killing_a_busy_pool_stops_its_worker() -> None:
    pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
    try:
        future = pool.submit(_sleep, 60)
        deadline = time.monotonic() + 30
        while not future.running() and time.monotonic() < deadline:
            time.sleep(0.05)
        processes = list(pool._processes.values())  # what the adapter reads, before it acts
        assert len(processes) == 1 and processes[0].is_alive()
        assert kill_pool_processes(pool) == 1
        with pytest.raises(BrokenProcessPool):
            future.result(10)
        # The pool's own manager thread reaps the killed worker; a second waiter in this thread
        # can see ECHILD and report "alive" for a moment, so ask the kernel instead.
        assert _gone(processes[0].pid, within=10)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


# --- RedBeat --------------------------------------------------------------------------------


def test_maybe_due_kwargs_are_what_the_scheduler_s_maybe_due_takes() -> None:
    scheduler = RedBeatScheduler.__new__(RedBeatScheduler)  # no app, no Redis: one attribute
    producer = object()
    scheduler.__dict__["producer"] = producer  # what Celery would open on first use

    kwargs = maybe_due_kwargs(scheduler)

    assert kwargs == {"producer": producer}
    inspect.signature(scheduler.maybe_due).bind(object(), **kwargs)


# --- httpcore -------------------------------------------------------------------------------


class _ImportSearches(importlib.abc.MetaPathFinder):
    """Records each module the import system searches for (a name not yet imported)."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def find_spec(self, name: str, path: Any, target: Any = None) -> None:
        self.names.append(name)


async def test_httpcore_knows_the_event_loop_without_an_import_search() -> None:
    """httpcore asks sniffio which event loop runs at every lock, event and request it makes.
    Without sniffio installed each ask is a failed import that searches every ``sys.path``
    entry (about 0.1 ms of CPU: `python -m bench.outgoing`); pyproject.toml keeps it."""
    assert current_async_library() == "asyncio"  # the first ask may import sniffio
    searches = _ImportSearches()
    sys.meta_path.insert(0, searches)
    try:
        for _ in range(3):
            assert current_async_library() == "asyncio"
    finally:
        sys.meta_path.remove(searches)

    assert searches.names == []


# --- redis-py -------------------------------------------------------------------------------


def test_redis_replies_are_parsed_by_hiredis() -> None:
    """redis-py parses replies in C when hiredis is installed, in Python otherwise: a 100-key
    MGET and a pub/sub message cost about half the CPU (`python -m bench.replies`).
    pyproject.toml asks for ``redis[hiredis]``; a connection like Herald's uses it."""
    connection = Redis.from_url("redis://127.0.0.1:6379/0").connection_pool.make_connection()

    assert isinstance(connection._parser, _AsyncHiredisParser)
