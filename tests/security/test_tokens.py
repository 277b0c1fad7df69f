"""Hostile tokens over HTTP and over WebSocket ``connection_init``, and cross-user access."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
from websockets.exceptions import ConnectionClosed

from backend.auth import mint_token
from backend.config import Settings
from backend.db.models import InboxCounter, InboxItem
from tests.conftest import LiveServer, app_client, start_live_server, stop_live_server
from tests.factories import rsa_key_pair, token_for
from tests.graphql_ws import connect, init, receive, subscribe
from tests.security.conftest import SECURITY_REDIS_URL, security_settings

ISSUER = "https://auth.example"
AUDIENCE = "herald"
SECRET = "test-secret-for-the-suite-0123456789abcdef"


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def _hs256(claims: dict[str, Any], key: bytes) -> str:
    header = _b64({"alg": "HS256", "typ": "JWT"})
    body = _b64(claims)
    signature = hmac.new(key, f"{header}.{body}".encode(), hashlib.sha256).digest()
    return f"{header}.{body}." + base64.urlsafe_b64encode(signature).decode().rstrip("=")


def hostile_tokens(settings: Settings) -> dict[str, str]:
    """Every kind of token that must be refused, for ``settings`` with issuer and audience."""
    now = int(time.time())
    good = {
        "sub": "victim",
        "roles": ["admin"],
        "type": "access",
        "exp": now + 600,
        "iss": ISSUER,
        "aud": AUDIENCE,
    }

    def signed(**changes: Any) -> str:
        claims = {k: v for k, v in {**good, **changes}.items() if v is not None}
        return jwt.encode(claims, SECRET, algorithm="HS256")

    return {
        "alg none": _b64({"alg": "none", "typ": "JWT"}) + "." + _b64(good) + ".",
        "alg none uppercase": _b64({"alg": "NONE", "typ": "JWT"}) + "." + _b64(good) + ".",
        "wrong key": jwt.encode(good, "another-secret-another-secret-0000", algorithm="HS256"),
        "HS512": jwt.encode(good, SECRET, algorithm="HS512"),
        "wrong issuer": signed(iss="https://evil.example"),
        "missing issuer": signed(iss=None),
        "wrong audience": signed(aud="someone-else"),
        "missing audience": signed(aud=None),
        "expired": signed(exp=now - 10),
        "not yet valid (nbf)": signed(nbf=now + 600),
        "issued in the future (iat)": signed(iat=now + 600),
        "refresh token": signed(type="refresh"),
        "no type": signed(type=None),
        "missing sub": signed(sub=None),
        "empty sub": signed(sub=""),
        "sub not a string": signed(sub=42),
        "missing exp": signed(exp=None),
        "roles not a list": signed(roles="admin"),
        "garbage": "not.a.jwt",
        "empty": "",
    }


@pytest.fixture(scope="module")
def strict_settings() -> Settings:
    return security_settings(jwt_issuer=ISSUER, jwt_audience=AUDIENCE)


CASES = sorted(hostile_tokens(security_settings(jwt_issuer=ISSUER, jwt_audience=AUDIENCE)))


@pytest.mark.parametrize("case", CASES)
async def test_hostile_tokens_are_refused_over_http(engine, strict_settings, case):
    token = hostile_tokens(strict_settings)[case]
    async with app_client(strict_settings) as client:
        headers = {"Accept": "application/json", "Authorization": f"Bearer {token}"}
        read = await client.post("/graphql", json={"query": "{ viewer { id } }"}, headers=headers)
        mutation = await client.post(
            "/graphql",
            json={"query": 'mutation { deleteTemplate(slug: "x") { __typename } }'},
            headers=headers,
        )
        good = mint_token(strict_settings, sub="ok", roles=["user"])
        control = await client.post(
            "/graphql",
            json={"query": "{ viewer { id } }"},
            headers={"Authorization": f"Bearer {good}"},
        )
    assert read.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert mutation.json()["data"]["deleteTemplate"]["__typename"] == "UnauthenticatedError"
    # The same app accepts a proper token: the refusal is about the token, not the setup.
    assert control.json()["data"]["viewer"]["id"] == "ok"


async def test_hs256_signed_with_the_rs256_public_key_is_refused_over_http(engine):
    private, public = rsa_key_pair()
    settings = security_settings(
        jwt_algorithm="RS256", jwt_public_key=public, jwt_private_key=private, jwt_secret=None
    )
    claims = {"sub": "u1", "roles": ["admin"], "type": "access", "exp": int(time.time()) + 60}
    forged = _hs256(claims, public.encode())
    async with app_client(settings) as client:
        refused = await client.post(
            "/graphql",
            json={"query": "{ viewer { id } }"},
            headers={"Authorization": f"Bearer {forged}"},
        )
        accepted = await client.post(
            "/graphql",
            json={"query": "{ viewer { id } }"},
            headers={"Authorization": f"Bearer {mint_token(settings, sub='u1', roles=[])}"},
        )
    assert refused.json()["errors"][0]["message"] == (
        "The token is signed with an algorithm not allowed"
    )
    assert accepted.json()["data"]["viewer"]["id"] == "u1"


# --- WebSocket ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def strict_server(engine: Any) -> Iterator[LiveServer]:
    server = start_live_server(
        {
            "HERALD_REDIS_URL": SECURITY_REDIS_URL,
            "HERALD_JWT_ISSUER": ISSUER,
            "HERALD_JWT_AUDIENCE": AUDIENCE,
            "HERALD_WS_CONNECTION_INIT_TIMEOUT_SECONDS": "2",
        }
    )
    yield server
    stop_live_server(server)


async def _init(server: LiveServer, token: str) -> tuple[dict[str, Any] | None, int | None]:
    """connection_init with ``token``: the ack, or the close code."""
    async with connect(server.url) as ws:
        try:
            message = await init(ws, token)
        except ConnectionClosed as closed:
            return None, closed.rcvd.code if closed.rcvd else None
        return message, None


@pytest.mark.parametrize("case", CASES)
async def test_hostile_tokens_are_refused_over_websocket(strict_server, strict_settings, case):
    ack, code = await _init(strict_server, hostile_tokens(strict_settings)[case])
    assert ack is None and code == 4403, (ack, code)


async def test_a_good_token_is_acknowledged_over_websocket(strict_server, strict_settings):
    ack, _ = await _init(strict_server, mint_token(strict_settings, sub="ws-ok", roles=["user"]))
    assert ack == {"type": "connection_ack", "payload": {"userId": "ws-ok"}}


async def test_users_cannot_subscribe_to_delivery_updates(strict_server, strict_settings):
    token = mint_token(strict_settings, sub="nosy", roles=["user"])
    async with connect(strict_server.url) as ws:
        assert (await init(ws, token))["type"] == "connection_ack"
        await subscribe(ws, "subscription { deliveryUpdates { id userId } }")
        message = await receive(ws)
    assert message["type"] in ("next", "error"), message
    errors = message["payload"] if message["type"] == "error" else message["payload"]["errors"]
    assert errors[0]["extensions"]["code"] == "FORBIDDEN"
    assert message["type"] == "error" or message["payload"]["data"] is None


# --- Cross-user reads -----------------------------------------------------------------------


async def _inbox_item(session: Any, user_id: str, n: int) -> str:
    session.add(InboxCounter(user_id=user_id, seq=n))
    delivery_id = f"d-{user_id}-{n}"
    session.add(
        InboxItem(
            delivery_id=delivery_id,
            user_id=user_id,
            seq=n,
            event_id=f"e-{n}",
            event_type="secret_thing",
            title="Private",
            body="For the owner only",
            data={},
        )
    )
    await session.commit()
    return delivery_id


async def test_users_never_read_or_change_each_others_notifications(sgql, sec_settings, session):
    victim_item = await _inbox_item(session, "victim-1", 1)
    victim = token_for(sec_settings, "user", sub="victim-1")
    nosy = token_for(sec_settings, "user", sub="nosy-1")

    inbox = await sgql("{ inbox { edges { node { id } } } unreadCount }", token=nosy)
    assert inbox["data"] == {"inbox": {"edges": []}, "unreadCount": 0}

    marked = await sgql(
        "mutation($ids: [ID!]!) { markRead(ids: $ids) { __typename ... on InboxChange { ids } } }",
        {"ids": [victim_item]},
        token=nosy,
    )
    assert marked["data"]["markRead"] == {"__typename": "InboxChange", "ids": []}
    archived = await sgql(
        "mutation($ids: [ID!]!) { archive(ids: $ids) { __typename ... on InboxChange { ids } } }",
        {"ids": [victim_item]},
        token=nosy,
    )
    assert archived["data"]["archive"]["ids"] == []

    own = await sgql("{ inbox { edges { node { id read } } } unreadCount }", token=victim)
    assert own["data"]["unreadCount"] == 1
    assert own["data"]["inbox"]["edges"] == [{"node": {"id": victim_item, "read": False}}]


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ('{ preferences(userId: "victim-1") { userId } }', "FORBIDDEN"),
        ('{ deliveries(filter: {userId: "victim-1"}) { edges { cursor } } }', "FORBIDDEN"),
        ('{ event(id: "e-1") { id } }', "FORBIDDEN"),
        ("{ deadLetters { edges { cursor } } }", "FORBIDDEN"),
        ("{ auditLog { edges { cursor } } }", "FORBIDDEN"),
    ],
)
async def test_cross_user_reads_are_refused(sgql, sec_settings, query, code):
    result = await sgql(query, token=token_for(sec_settings, "user", sub="nosy-2"))
    assert result["errors"][0]["extensions"]["code"] == code
    assert not any((result.get("data") or {}).values())


async def test_users_cannot_change_anothers_preferences(sgql, sec_settings):
    result = await sgql(
        'mutation { setPreferences(input: {userId: "victim-1", disabledChannels: [EMAIL]}) '
        "{ __typename } }",
        token=token_for(sec_settings, "user", sub="nosy-3"),
    )
    assert result["data"]["setPreferences"]["__typename"] == "ForbiddenError"
