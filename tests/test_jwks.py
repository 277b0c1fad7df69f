"""Tokens verified with the auth service's JWKS (``HERALD_JWT_JWKS_URL``): keys fetched from a
real local HTTP server standing in for the provider, rotated while requests and a socket go
on, and unknown kids refetching the set no more than once per ``min refresh`` interval."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.utils import base64url_encode

from backend.auth import TokenVerifier
from backend.errors import UnauthenticatedError
from tests.conftest import make_settings, start_live_server, stop_live_server
from tests.graphql_ws import connect, init, receive, subscribe
from tests.http_stubs import QuietHandler, serve

JWKS_PATH = "/.well-known/jwks.json"


class SigningKey:
    """An RSA key of the provider, with its kid."""

    def __init__(self, kid: str) -> None:
        self.kid = kid
        self.private = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def jwk(self) -> dict[str, Any]:
        public = jwt.algorithms.RSAAlgorithm.to_jwk(self.private.public_key(), as_dict=True)
        return {**public, "kid": self.kid, "alg": "RS256", "use": "sig"}

    def token(self, sub: str, *, kid: str | None = None, ttl: int = 600) -> str:
        now = int(time.time())
        claims = {"sub": sub, "roles": ["user"], "type": "access", "iat": now, "exp": now + ttl}
        return jwt.encode(claims, self.private, algorithm="RS256", headers={"kid": kid or self.kid})


class JwksProvider:
    """A real HTTP server publishing a JWKS that the test changes, counting its fetches."""

    def __init__(self) -> None:
        self.document: dict[str, Any] = {"keys": []}
        self.hits = 0
        self.accepts: list[str | None] = []
        provider = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:
                if self.path != JWKS_PATH:
                    self.send_error(404)
                    return
                provider.hits += 1
                provider.accepts.append(self.headers.get("Accept"))
                self.reply_json(200, provider.document)

        self.server, base_url = serve(Handler)
        self.url = base_url + JWKS_PATH

    def publish(self, *keys: SigningKey, extra: list[dict[str, Any]] | None = None) -> None:
        self.document = {"keys": [k.jwk() for k in keys] + (extra or [])}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def provider() -> Iterator[JwksProvider]:
    jwks = JwksProvider()
    try:
        yield jwks
    finally:
        jwks.close()


def jwks_settings(provider: JwksProvider, **overrides: Any) -> Any:
    return make_settings(
        jwt_algorithm="RS256", jwt_jwks_url=provider.url, jwt_secret=None, **overrides
    )


async def test_keys_come_from_the_jwks_and_are_cached(provider):
    key = SigningKey("k1")
    provider.publish(key)
    verifier = TokenVerifier(jwks_settings(provider))
    # Many requests at once with a kid not seen yet share one fetch.
    tokens = [key.token(f"user-{i}") for i in range(20)]
    principals = await asyncio.gather(*(verifier.authenticate(t) for t in tokens))
    assert [p.user_id for p in principals] == [f"user-{i}" for i in range(20)]
    assert provider.hits == 1
    assert provider.accepts == ["application/json"]
    await verifier.authenticate(key.token("user-again"))
    assert provider.hits == 1


async def test_algorithm_stays_pinned_whatever_the_jwks_lists(provider):
    key = SigningKey("rsa")
    secret = "a-shared-secret-an-attacker-knows-0123456789"
    oct_key = {
        "kty": "oct",
        "kid": "hmac",
        "alg": "HS256",
        "k": base64url_encode(secret.encode()).decode(),
    }
    provider.publish(key, extra=[oct_key])
    verifier = TokenVerifier(jwks_settings(provider))
    now = int(time.time())
    claims = {"sub": "mallory", "roles": ["admin"], "type": "access", "exp": now + 600}
    forged = jwt.encode(claims, secret, algorithm="HS256", headers={"kid": "hmac"})
    with pytest.raises(UnauthenticatedError):
        await verifier.authenticate(forged)
    # HS256 signed with the RSA key's public PEM as the secret (PyJWT will not make one, so
    # it is made by hand): refused before any key is used.
    public_pem = key.private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    signing_input = b".".join(
        base64url_encode(json.dumps(part).encode())
        for part in ({"alg": "HS256", "typ": "JWT", "kid": "rsa"}, claims)
    )
    signature = hmac.new(public_pem, signing_input, hashlib.sha256).digest()
    confused = (signing_input + b"." + base64url_encode(signature)).decode()
    with pytest.raises(UnauthenticatedError, match="algorithm not allowed"):
        await verifier.authenticate(confused)
    assert (await verifier.authenticate(key.token("alice"))).user_id == "alice"


async def test_forged_kids_refetch_at_most_once_per_interval(provider):
    key = SigningKey("real")
    provider.publish(key)
    verifier = TokenVerifier(jwks_settings(provider, jwt_jwks_min_refresh_seconds=0.5))
    assert (await verifier.authenticate(key.token("alice"))).user_id == "alice"
    assert provider.hits == 1
    started = time.monotonic()
    refused = 0
    while time.monotonic() - started < 2.0:
        forged = [key.token("mallory", kid=uuid.uuid4().hex) for _ in range(20)]
        results = await asyncio.gather(
            *(verifier.authenticate(t) for t in forged), return_exceptions=True
        )
        refused += sum(isinstance(r, UnauthenticatedError) for r in results)
        await asyncio.sleep(0.05)
    elapsed = time.monotonic() - started
    assert refused >= 200
    # One fetch per 0.5 s at most (and the one a new interval may start), not one per token.
    assert provider.hits - 1 <= int(elapsed / 0.5) + 1
    assert provider.hits - 1 >= 2  # it does refetch once the interval has passed


async def verifying(provider: JwksProvider, cache_seconds: float) -> tuple[SigningKey, Any]:
    """A published key, and a verifier holding it (a token of it verified) whose set goes
    stale after ``cache_seconds`` and may be fetched again at once."""
    key = SigningKey("k1")
    provider.publish(key)
    verifier = TokenVerifier(
        jwks_settings(
            provider, jwt_jwks_cache_seconds=cache_seconds, jwt_jwks_min_refresh_seconds=0
        )
    )
    assert (await verifier.authenticate(key.token("a"))).user_id == "a"
    return key, verifier


async def test_provider_down_keeps_the_keys_in_hand(provider):
    key, verifier = await verifying(provider, cache_seconds=0.2)
    provider.close()
    await asyncio.sleep(0.3)
    # The set is stale and the provider gone: the key fetched before still verifies.
    assert (await verifier.authenticate(key.token("b"))).user_id == "b"


async def _viewer(client: httpx.AsyncClient, token: str) -> dict[str, Any]:
    response = await client.post(
        "/graphql",
        json={"query": "{ viewer { id } }"},
        headers={"Authorization": f"Bearer {token}"},
    )
    body: dict[str, Any] = response.json()
    return body


async def test_rotation_at_the_provider_while_requests_and_a_socket_go_on(provider, engine):
    old, new = SigningKey("2026-old"), SigningKey("2026-new")
    provider.publish(old)
    server = start_live_server(
        {
            "HERALD_JWT_ALGORITHM": "RS256",
            "HERALD_JWT_JWKS_URL": provider.url,
            "HERALD_JWT_JWKS_MIN_REFRESH_SECONDS": "1",
        }
    )
    try:
        async with (
            httpx.AsyncClient(base_url=server.url, timeout=10) as client,
            connect(server.url) as ws,
        ):
            ack = await init(ws, old.token("socket-user"))
            assert ack == {"type": "connection_ack", "payload": {"userId": "socket-user"}}
            await subscribe(ws, "subscription { heartbeat(intervalSeconds: 1) { at } }")
            assert (await receive(ws))["type"] == "next"

            cached = old.token("http-user")
            for _ in range(5):
                assert (await _viewer(client, cached))["data"]["viewer"]["id"] == "http-user"
            assert provider.hits == 1

            # The provider rotates: the new key replaces the old one.
            provider.publish(new)
            await asyncio.sleep(1.1)
            body = await _viewer(client, new.token("http-user"))
            assert body["data"]["viewer"]["id"] == "http-user"
            assert provider.hits == 2
            # The socket opened with the old key goes on streaming.
            for _ in range(2):
                message = await receive(ws)
                assert message["type"] == "next" and message["id"] == "1"

            async with connect(server.url) as second:
                ack = await init(second, new.token("second-socket"))
                assert ack["payload"] == {"userId": "second-socket"}

            # The old key left the set: its tokens, even one verified before, are refused.
            body = await _viewer(client, cached)
            assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
            assert "not known" in body["errors"][0]["message"]
            message = await receive(ws)
            assert message["type"] == "next"
    finally:
        stop_live_server(server)


async def test_a_malformed_jwks_keeps_the_keys_in_hand(provider):
    key, verifier = await verifying(provider, cache_seconds=0.1)
    for document in ([], {"keys": "x"}, {"keys": []}, "text"):
        provider.document = document  # type: ignore[assignment]
        await asyncio.sleep(0.15)
        assert (await verifier.authenticate(key.token("b"))).user_id == "b"
        with pytest.raises(UnauthenticatedError, match="not known"):
            await verifier.authenticate(key.token("c", kid="other"))
