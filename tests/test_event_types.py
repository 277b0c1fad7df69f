"""Event types: the built-in ones, registering custom ones, and what ingestion checks."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import async_sessionmaker

from backend.services.event_types import RuleCache
from tests.factories import token_for

REGISTER = """mutation($i: RegisterEventTypeInput!) { registerEventType(input: $i) { __typename
  ... on EventType { name channels critical builtin payloadSchema templateSlug }
  ... on Error { code message field } } }"""


async def test_builtin_types_are_listed(gql, settings):
    result = await gql(
        "{ eventTypes { name channels critical builtin templateSlug } }",
        token=token_for(settings, "service"),
    )
    types = {t["name"]: t for t in result["data"]["eventTypes"]}
    assert types["user_registered"]["channels"] == ["EMAIL", "IN_APP"]
    assert types["movie_added"]["channels"] == ["IN_APP", "PUSH", "EMAIL"]
    assert types["password_reset"] == {
        "name": "password_reset",
        "channels": ["EMAIL"],
        "critical": True,
        "builtin": True,
        "templateSlug": "password_reset",
    }
    forbidden = await gql("{ eventTypes { name } }", token=token_for(settings, "user"))
    assert forbidden["errors"][0]["extensions"]["code"] == "FORBIDDEN"


async def test_register_custom_type_then_change_it(gql, settings):
    manager = token_for(settings, "manager")
    schema = {
        "type": "object",
        "required": ["amount"],
        "properties": {"amount": {"type": "number"}},
    }
    created = await gql(
        REGISTER,
        {
            "i": {
                "name": "invoice_paid",
                "templateSlug": "welcome",
                "channels": ["EMAIL"],
                "payloadSchema": schema,
            }
        },
        token=manager,
    )
    assert created["data"]["registerEventType"] == {
        "__typename": "EventType",
        "name": "invoice_paid",
        "channels": ["EMAIL"],
        "critical": False,
        "builtin": False,
        "payloadSchema": schema,
        "templateSlug": "welcome",
    }
    changed = await gql(
        REGISTER,
        {
            "i": {
                "name": "invoice_paid",
                "templateSlug": "welcome",
                "channels": ["IN_APP", "EMAIL"],
                "critical": True,
            }
        },
        token=manager,
    )
    assert changed["data"]["registerEventType"]["channels"] == ["IN_APP", "EMAIL"]
    assert changed["data"]["registerEventType"]["critical"] is True


async def test_register_refusals(gql, settings):
    manager = token_for(settings, "manager")
    base = {"name": "x_y", "templateSlug": "welcome", "channels": ["EMAIL"]}
    cases = [
        ({"name": "user_registered"}, "CONFLICT", "name"),
        ({"name": "Bad Name"}, "VALIDATION", "name"),
        ({"templateSlug": "nope"}, "NOT_FOUND", "templateSlug"),
        ({"templateSlug": "password_reset", "channels": ["SMS"]}, "VALIDATION", "channels"),
        ({"payloadSchema": {"type": "no-such-type"}}, "VALIDATION", "payloadSchema"),
        ({"channels": []}, "VALIDATION", "channels"),
    ]
    for changes, code, field in cases:
        data = {**base, **changes}
        result = (await gql(REGISTER, {"i": data}, token=manager))["data"]["registerEventType"]
        assert (result["code"], result["field"]) == (code, field), data
    service = await gql(REGISTER, {"i": base}, token=token_for(settings, "service"))
    assert service["data"]["registerEventType"]["code"] == "FORBIDDEN"


async def test_ingestion_checks_before_anything_is_published(gql, settings):
    service = token_for(settings, "service")
    send = """mutation($i: EventInput!) { sendEvent(input: $i) { __typename
      ... on Error { code field } } }"""
    cases = [
        ({"type": "user_registered", "userIds": []}, "VALIDATION", "userIds"),
        ({"type": "user_registered", "userIds": ["u"], "payload": [1, 2]}, "VALIDATION", "payload"),
        (
            {"type": "user_registered", "userIds": ["u"], "locale": "klingon!"},
            "VALIDATION",
            "locale",
        ),
        (
            {"type": "user_registered", "userIds": ["u"], "templateSlug": "nope"},
            "NOT_FOUND",
            "templateSlug",
        ),
        (
            {"type": "user_registered", "userIds": ["u"], "channels": ["SMS"]},
            "VALIDATION",
            "channels",
        ),
        (
            {"type": "user_registered", "userIds": ["u"], "sendAt": "2099-01-01T00:00:00Z"},
            "VALIDATION",
            "sendAt",
        ),
        (
            {"type": "password_reset", "userIds": ["u"], "payload": {"reset_url": 5}},
            "VALIDATION",
            "payload.reset_url",
        ),
    ]
    for data, code, field in cases:
        result = (await gql(send, {"i": data}, token=service))["data"]["sendEvent"]
        assert (result.get("code"), result.get("field")) == (code, field), data
    manager = await gql(
        send,
        {"i": {"type": "user_registered", "userIds": ["u"]}},
        token=token_for(settings, "manager"),
    )
    assert manager["data"]["sendEvent"]["code"] == "FORBIDDEN"


class _Statements:
    """Counts the statements an engine runs that read ``table``."""

    def __init__(self, engine, table):
        self.table = table
        self.count = 0
        self.sync = engine.sync_engine
        event.listen(self.sync, "before_cursor_execute", self._seen)

    def _seen(self, conn, cursor, statement, parameters, context, executemany):
        if f"FROM {self.table}" in statement:
            self.count += 1

    def close(self):
        event.remove(self.sync, "before_cursor_execute", self._seen)


async def test_rule_cache_reads_an_expired_entry_once_for_every_request_waiting(engine):
    """When the rules expire under load, one request reads PostgreSQL and the others arriving
    meanwhile share its answer (before, each of them opened a connection for the same row)."""
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    now = [0.0]
    cache = RuleCache(ttl=5.0, clock=lambda: now[0])
    reads = _Statements(engine, "event_types")

    async def ask():
        async with sessions() as session:
            return await cache.rule(session, "user_registered")

    try:
        first = await asyncio.gather(*(ask() for _ in range(20)))
        assert reads.count == 1
        assert {r.name for r in first} == {"user_registered"}
        assert len({id(r) for r in first}) == 1
        now[0] = 4.9
        await asyncio.gather(*(ask() for _ in range(20)))
        assert reads.count == 1
        now[0] = 5.0  # expired
        again = await asyncio.gather(*(ask() for _ in range(20)))
        assert reads.count == 2
        assert len({id(r) for r in again}) == 1 and again[0] is not first[0]
    finally:
        reads.close()


async def test_a_request_waiting_on_a_cancelled_load_loads_the_rule_itself(engine):
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    cache = RuleCache()
    reads = _Statements(engine, "event_types")

    async def ask():
        async with sessions() as session:
            return await cache.rule(session, "movie_added")

    try:
        loader = asyncio.create_task(ask())
        await asyncio.sleep(0)  # the loader is reading PostgreSQL
        waiter = asyncio.create_task(ask())
        await asyncio.sleep(0)  # the waiter waits for the loader's answer
        loader.cancel()
        with pytest.raises(asyncio.CancelledError):
            await loader
        rule = await waiter
        assert rule is not None and rule.name == "movie_added"
        assert reads.count >= 1  # the waiter's own read (the loader's may not have begun)
        seen = reads.count
        assert await ask() is rule  # the waiter's answer was kept
        assert reads.count == seen
    finally:
        reads.close()


async def test_invalidating_the_cache_drops_a_load_in_flight(engine):
    """A rule read before a manager changed it must not be kept after ``invalidate``."""
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    cache = RuleCache()

    async def ask():
        async with sessions() as session:
            return await cache.rule(session, "password_reset")

    loader = asyncio.create_task(ask())
    await asyncio.sleep(0)
    cache.invalidate()
    assert (await loader).name == "password_reset"  # its request is answered
    reads = _Statements(engine, "event_types")
    try:
        await ask()
        assert reads.count == 1  # but the answer was not kept
    finally:
        reads.close()
