"""API keys for services: made by admins and shown once, stored hashed, granting roles or
narrower scopes, sent as a bearer token, ``X-Api-Key`` or in ``connection_init``, counted per
key in the rate limits, named in the audit log, and refused by every API process at once when
revoked."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update
from websockets.exceptions import ConnectionClosed

from backend.db.models import ApiKey
from tests.conftest import start_live_server, stop_live_server
from tests.factories import token_for
from tests.graphql_ws import connect, receive, send

CREATE = """
mutation($i: CreateApiKeyInput!) {
  createApiKey(input: $i) {
    __typename
    ... on CreatedApiKey { secret apiKey { id name prefix roles scopes createdBy expiresAt } }
    ... on Error { code message field }
  }
}
"""
REVOKE = """
mutation($id: ID!) {
  revokeApiKey(id: $id) {
    __typename
    ... on ApiKey { id revokedAt revokedBy }
    ... on Error { code message field }
  }
}
"""
LIST = """
query($revoked: Boolean!) {
  apiKeys(includeRevoked: $revoked) {
    edges { node { id name prefix roles scopes createdAt lastUsedAt expiresAt revokedAt } }
  }
}
"""
VIEWER = "{ viewer { id roles } }"
HEARTBEAT = "subscription { heartbeat(intervalSeconds: 1) { at } }"
SEND = """
mutation($input: EventInput!) {
  sendEvent(input: $input) { __typename ... on Error { code message } }
}
"""
EVENT = {"type": "nothing_registered", "userIds": ["u1"]}


def service_name() -> str:
    return f"billing-{uuid.uuid4().hex[:8]}"


async def create_key(gql: Any, settings: Any, grants: list[str], **extra: Any) -> dict[str, Any]:
    result = await gql(
        CREATE,
        {"i": {"name": service_name(), "grants": grants, **extra}},
        token=token_for(settings, "admin", sub="admin-1"),
    )
    created: dict[str, Any] = result["data"]["createApiKey"]
    assert created["__typename"] == "CreatedApiKey", created
    return created


async def test_a_key_is_shown_once_and_stored_hashed(gql, settings, session):
    created = await create_key(gql, settings, ["service"])
    secret, key = created["secret"], created["apiKey"]
    assert secret.startswith(key["prefix"] + "_") and key["prefix"].startswith("hk_")
    assert len(secret) > 50
    assert key["roles"] == ["service"] and key["scopes"] == []
    assert key["createdBy"] == "admin-1"
    row = (await session.execute(select(ApiKey).where(ApiKey.id == key["id"]))).scalar_one()
    assert row.secret_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in repr(
        [getattr(row, c.key) for c in ApiKey.__table__.columns]  # type: ignore[attr-defined]
    )
    listed = await gql(LIST, {"revoked": False}, token=token_for(settings, "admin"))
    nodes = [e["node"] for e in listed["data"]["apiKeys"]["edges"]]
    mine = next(n for n in nodes if n["id"] == key["id"])
    assert mine["prefix"] == key["prefix"] and "secret" not in mine
    assert mine["lastUsedAt"] is None


@pytest.mark.parametrize("how", ["bearer", "x-api-key"])
async def test_a_key_authenticates_as_its_service(gql, settings, how):
    created = await create_key(gql, settings, ["service"])
    secret, prefix = created["secret"], created["apiKey"]["prefix"]
    header = {"Authorization": f"Bearer {secret}"} if how == "bearer" else {"X-Api-Key": secret}
    result = await gql(VIEWER, headers=header)
    assert result["data"]["viewer"] == {"id": f"api-key:{prefix}", "roles": ["service"]}
    # A key with a wrong secret, or malformed, is refused.
    wrong = secret[:-4] + ("aaaa" if not secret.endswith("aaaa") else "bbbb")
    for bad in (wrong, "hk_short"):
        refused = await gql(VIEWER, headers={"X-Api-Key": bad})
        assert refused["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


async def test_scopes_grant_only_their_operations(gql, settings):
    reader = (await create_key(gql, settings, ["templates:read"]))["secret"]
    sender = (await create_key(gql, settings, ["events:send"]))["secret"]

    templates = await gql("{ templates { edges { cursor } } }", headers={"X-Api-Key": reader})
    assert "errors" not in templates and "templates" in templates["data"]
    refused = await gql("{ templates { edges { cursor } } }", headers={"X-Api-Key": sender})
    assert refused["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    sent = await gql(SEND, {"input": EVENT}, headers={"X-Api-Key": sender})
    # Past the role check: the event itself is refused as unknown.
    assert sent["data"]["sendEvent"]["code"] == "VALIDATION"
    sent = await gql(SEND, {"input": EVENT}, headers={"X-Api-Key": reader})
    assert sent["data"]["sendEvent"]["code"] == "FORBIDDEN"
    create = await gql(
        'mutation { deleteTemplate(slug: "nope") { __typename } }', headers={"X-Api-Key": reader}
    )
    assert create["data"]["deleteTemplate"]["__typename"] == "ForbiddenError"


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"name": "", "grants": ["service"]}, "name"),
        ({"name": "ok", "grants": []}, "grants"),
        ({"name": "ok", "grants": ["admin"]}, "grants"),
        ({"name": "ok", "grants": ["events:delete"]}, "grants"),
        ({"name": "ok", "grants": ["service"], "expiresAt": "2020-01-01T00:00:00Z"}, "expiresAt"),
    ],
)
async def test_bad_input_is_a_validation_error(gql, settings, payload, field):
    result = await gql(CREATE, {"i": payload}, token=token_for(settings, "admin"))
    error = result["data"]["createApiKey"]
    assert (error["__typename"], error["code"], error["field"]) == (
        "ValidationError",
        "VALIDATION",
        field,
    )


async def test_only_admins_manage_keys_and_attempts_are_audited(gql, settings):
    created = await create_key(gql, settings, ["service"])
    for role in ("manager", "service", "user"):
        result = await gql(
            CREATE, {"i": {"name": "x", "grants": ["service"]}}, token=token_for(settings, role)
        )
        assert result["data"]["createApiKey"]["__typename"] == "ForbiddenError"
        listed = await gql(LIST, {"revoked": False}, token=token_for(settings, role))
        assert listed["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    # A key trying an admin operation is refused and named in the audit log.
    key = created["secret"]
    attempt = await gql(REVOKE, {"id": created["apiKey"]["id"]}, headers={"X-Api-Key": key})
    assert attempt["data"]["revokeApiKey"]["__typename"] == "ForbiddenError"
    actor = f"api-key:{created['apiKey']['prefix']}"
    log = await gql(
        "query($a: String!) { auditLog(filter: {actor: $a}) { edges { node { actor actorRoles "
        "operation outcome } } } }",
        {"a": actor},
        token=token_for(settings, "admin"),
    )
    entries = [e["node"] for e in log["data"]["auditLog"]["edges"]]
    assert entries == [
        {
            "actor": actor,
            "actorRoles": ["service"],
            "operation": "revokeApiKey",
            "outcome": "FORBIDDEN",
        }
    ]


async def test_revoke_errors_are_typed(gql, settings):
    admin = token_for(settings, "admin")
    missing = await gql(REVOKE, {"id": str(uuid.uuid4())}, token=admin)
    assert missing["data"]["revokeApiKey"]["code"] == "NOT_FOUND"
    malformed = await gql(REVOKE, {"id": "not-a-uuid"}, token=admin)
    assert malformed["data"]["revokeApiKey"]["code"] == "VALIDATION"
    created = await create_key(gql, settings, ["service"])
    first = await gql(REVOKE, {"id": created["apiKey"]["id"]}, token=admin)
    assert first["data"]["revokeApiKey"]["revokedBy"] == "user-1"
    again = await gql(REVOKE, {"id": created["apiKey"]["id"]}, token=admin)
    assert again["data"]["revokeApiKey"]["code"] == "CONFLICT"
    refused = await gql(VIEWER, headers={"X-Api-Key": created["secret"]})
    assert refused["errors"][0]["message"] == "The API key has been revoked"
    listed = await gql(LIST, {"revoked": False}, token=admin)
    assert created["apiKey"]["id"] not in {
        e["node"]["id"] for e in listed["data"]["apiKeys"]["edges"]
    }
    listed = await gql(LIST, {"revoked": True}, token=admin)
    assert created["apiKey"]["id"] in {e["node"]["id"] for e in listed["data"]["apiKeys"]["edges"]}


async def test_an_expired_key_is_refused(gql, settings, session):
    created = await create_key(gql, settings, ["service"])
    await session.execute(
        update(ApiKey)
        .where(ApiKey.id == created["apiKey"]["id"])
        .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
    )
    await session.flush()
    refused = await gql(VIEWER, headers={"X-Api-Key": created["secret"]})
    assert refused["errors"][0]["message"] == "The API key has expired"


async def test_last_use_is_written_at_most_once_a_minute(gql, settings):
    created = await create_key(gql, settings, ["service"])
    admin = token_for(settings, "admin")

    async def last_used() -> str | None:
        listed = await gql(LIST, {"revoked": False}, token=admin)
        node = next(
            e["node"]
            for e in listed["data"]["apiKeys"]["edges"]
            if e["node"]["id"] == created["apiKey"]["id"]
        )
        value: str | None = node["lastUsedAt"]
        return value

    assert await last_used() is None
    await gql(VIEWER, headers={"X-Api-Key": created["secret"]})
    first = await last_used()
    assert first is not None
    for _ in range(5):
        await gql(VIEWER, headers={"X-Api-Key": created["secret"]})
    assert await last_used() == first


def _post(url: str, query: str, variables: dict[str, Any] | None = None, **headers: str) -> Any:
    response = httpx.post(
        f"{url}/graphql", json={"query": query, "variables": variables}, headers=headers, timeout=10
    )
    return response.json()


async def _ws_init(url: str, payload: dict[str, Any]) -> dict[str, Any] | int:
    """The answer to ``connection_init``: the ack, or the close code."""
    async with connect(url) as ws:
        await send(ws, {"type": "connection_init", "payload": payload})
        try:
            return await receive(ws)
        except ConnectionClosed as exc:
            assert exc.rcvd is not None
            return exc.rcvd.code


async def test_revocation_reaches_every_api_process_at_once(engine):
    # A day-long cache: only the revocation message can make the other process refuse.
    env = {
        "HERALD_API_KEY_CACHE_SECONDS": "86400",
        "HERALD_EVENT_RATE_PER_SECOND": "0.001",
        "HERALD_EVENT_RATE_BURST": "2",
    }
    first, second = start_live_server(env), start_live_server(env)
    try:
        from tests.conftest import make_settings

        admin = f"Bearer {token_for(make_settings(), 'admin', sub='key-admin')}"
        keys = []
        for _ in range(2):
            result = await asyncio.to_thread(
                _post,
                first.url,
                CREATE,
                {"i": {"name": service_name(), "grants": ["service"]}},
                Authorization=admin,
            )
            keys.append(result["data"]["createApiKey"])
        key, other = keys[0]["secret"], keys[1]["secret"]
        prefix = keys[0]["apiKey"]["prefix"]

        # Both processes know the key (and cache it), over HTTP and WebSocket.
        for server in (first, second):
            seen = await asyncio.to_thread(_post, server.url, VIEWER, **{"X-Api-Key": key})
            assert seen["data"]["viewer"]["id"] == f"api-key:{prefix}"
        ack = await _ws_init(second.url, {"apiKey": key})
        assert ack == {"type": "connection_ack", "payload": {"userId": f"api-key:{prefix}"}}
        ack = await _ws_init(second.url, {"authorization": f"Bearer {key}"})
        assert isinstance(ack, dict) and ack["type"] == "connection_ack"
        # Sockets that stay open through the revocation: the key's, on each process, with a
        # live subscription, and one of the other key's.
        opened = []
        for server, secret in ((first, key), (second, key), (second, other)):
            ws = await connect(server.url)
            await send(ws, {"type": "connection_init", "payload": {"apiKey": secret}})
            assert (await receive(ws))["type"] == "connection_ack"
            await send(ws, {"id": "beat", "type": "subscribe", "payload": {"query": HEARTBEAT}})
            assert (await receive(ws))["type"] == "next"
            opened.append(ws)

        # Rate limits count per key, across both processes (burst 2).
        codes = []
        for server in (first, second, first):
            sent = await asyncio.to_thread(
                _post, server.url, SEND, {"input": EVENT}, Authorization=f"Bearer {key}"
            )
            codes.append(sent["data"]["sendEvent"]["code"])
        assert codes == ["VALIDATION", "VALIDATION", "RATE_LIMITED"]
        sent = await asyncio.to_thread(
            _post, second.url, SEND, {"input": EVENT}, Authorization=f"Bearer {other}"
        )
        assert sent["data"]["sendEvent"]["code"] == "VALIDATION"

        revoked = await asyncio.to_thread(
            _post, first.url, REVOKE, {"id": keys[0]["apiKey"]["id"]}, Authorization=admin
        )
        assert revoked["data"]["revokeApiKey"]["__typename"] == "ApiKey"
        started = time.monotonic()
        while True:
            seen = await asyncio.to_thread(_post, second.url, VIEWER, **{"X-Api-Key": key})
            if "errors" in seen:
                break
            assert time.monotonic() - started < 2, "the second process still takes the key"
            await asyncio.sleep(0.02)
        assert seen["errors"][0]["message"] == "The API key has been revoked"
        assert await _ws_init(second.url, {"apiKey": key}) == 4403
        # The revoked key's open sockets are closed with 4403 on both processes, at once.
        for ws in opened[:2]:
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    message = await asyncio.wait_for(ws.recv(), 2)
                    assert json.loads(message)["type"] == "next"
            assert closed.value.rcvd is not None
            assert closed.value.rcvd.code == 4403
            assert closed.value.rcvd.reason == "The API key has been revoked"
        # The other key's socket streams on.
        assert (await receive(opened[2]))["type"] == "next"
        await opened[2].close()
        # The other key goes on working.
        seen = await asyncio.to_thread(_post, second.url, VIEWER, **{"X-Api-Key": other})
        assert seen["data"]["viewer"]["roles"] == ["service"]
    finally:
        stop_live_server(first)
        stop_live_server(second)


async def test_the_migration_creates_the_model_table(engine):
    from tests.conftest import schema_differences

    assert await schema_differences(engine, {"api_keys"}) == []


async def test_an_unknown_prefix_is_remembered_for_a_few_seconds(sessionmaker, monkeypatch):
    from backend.errors import UnauthenticatedError
    from backend.services import api_keys

    opened = CountedSessions(sessionmaker)
    verifier = counted_verifier(opened, touch_seconds=60)
    unknown = "hk_" + "Unknown123" + "_" + "x" * 43
    # A service sending a wrong key in a loop: PostgreSQL is asked once.
    for _ in range(20):
        with pytest.raises(UnauthenticatedError, match="The API key is not valid"):
            await verifier.verify(unknown)
    assert opened.count == 1
    # Remembered for a few seconds only: then asked again.
    monkeypatch.setattr(api_keys, "UNKNOWN_SECONDS", 0.2)
    await asyncio.sleep(0.25)
    with pytest.raises(UnauthenticatedError):
        await verifier.verify(unknown)
    assert opened.count == 2
    # And only so many: the oldest unknown prefixes make room.
    monkeypatch.setattr(api_keys, "MAX_UNKNOWN", 3)
    for letter in "abcde":
        with pytest.raises(UnauthenticatedError):
            await verifier.verify("hk_" + letter * 10 + "_" + "x" * 43)
    assert opened.count == 7
    assert len(verifier._unknown) == 3


async def test_requests_signed_with_one_key_read_it_once_when_its_entry_expires(engine):
    """A service's requests arrive side by side: when its key's entry is missing or expired,
    one query reads it and the others wait for that answer (each reading it took a
    connection apiece). A revocation meanwhile is not missed: what waited reads it again."""
    from sqlalchemy.ext.asyncio import async_sessionmaker

    from backend.auth import Principal
    from backend.errors import UnauthenticatedError
    from backend.services import api_keys

    sessions = async_sessionmaker(engine, expire_on_commit=False)
    async with sessions() as session:
        admin = Principal(user_id="admin-1", roles=frozenset({"admin"}))
        created = await api_keys.create_api_key(
            session, actor=admin, data=api_keys.ApiKeyData(name="billing", grants=["service"])
        )
        await session.commit()
    opened = CountedSessions(sessions)
    verifier = counted_verifier(opened, touch_seconds=3600)
    signed_in = await asyncio.gather(*(verifier.verify(created.secret) for _ in range(20)))
    assert {p.user_id for p in signed_in} == {f"api-key:{created.row.prefix}"}
    assert opened.count == 2  # the one look-up, and the one "last used" write

    # Revoked while a look-up is in flight: the requests that waited for it read the key again
    # (and see the revocation) instead of taking the answer read before it.
    verifier.forget(created.row.prefix)
    gate = asyncio.Event()
    read = verifier._load

    async def held(prefix: str, now: float) -> Any:
        entry = await read(prefix, now)
        await gate.wait()
        return entry

    verifier._load = held  # type: ignore[method-assign]
    first = asyncio.create_task(verifier.verify(created.secret))
    await asyncio.sleep(0)
    waiting = [asyncio.create_task(verifier.verify(created.secret)) for _ in range(3)]
    await asyncio.sleep(0)
    async with sessions() as session:
        await api_keys.revoke_api_key(session, actor=admin, key_id=str(created.row.id))
        await session.commit()
    verifier.forget(created.row.prefix)
    gate.set()
    assert (await first).user_id == f"api-key:{created.row.prefix}"  # it asked before
    for request in waiting:
        with pytest.raises(UnauthenticatedError, match="revoked"):
            await request


class CountedSessions:
    """A session factory that counts the sessions it opened (a pooled connection each)."""

    def __init__(self, make: Any) -> None:
        self.make, self.count = make, 0

    def __call__(self) -> Any:
        self.count += 1
        return self.make()


def counted_verifier(sessions: CountedSessions, *, touch_seconds: float) -> Any:
    """An API-key verifier on ``sessions``, entries kept 60 s."""
    from backend.services import api_keys
    from tests.conftest import TEST_REDIS_URL

    return api_keys.ApiKeyVerifier(
        sessions, redis_url=TEST_REDIS_URL, cache_seconds=60, touch_seconds=touch_seconds
    )
