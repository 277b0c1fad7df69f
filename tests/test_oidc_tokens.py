"""Access tokens from an OpenID provider (``HERALD_OIDC_ISSUER``): its keys found through its
discovery document, served by a real local HTTP server the test changes and counts; a document
naming another issuer trusted for nothing; a provider down asked again no more than once per
``min refresh`` interval; a rotated key picked up. The whole sign-in flow against a certified
provider is in tests/admin/test_single_sign_on.py."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from backend.auth import TokenVerifier
from backend.errors import UnauthenticatedError
from tests.conftest import make_settings
from tests.http_stubs import QuietHandler, serve

AUDIENCE = "https://herald.example.com/graphql"


class Provider:
    """A discovery document and a JWKS on a real HTTP server; ``up`` False answers 503."""

    def __init__(self) -> None:
        self.keys: dict[str, rsa.RSAPrivateKey] = {}
        self.up = True
        self.issuer_in_document: str | None = None
        self.hits: list[str] = []
        provider = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:
                provider.hits.append(self.path)
                if not provider.up:
                    self.send_error(503)
                    return
                if self.path == "/.well-known/openid-configuration":
                    body: Any = {
                        "issuer": provider.issuer_in_document or provider.issuer,
                        "jwks_uri": provider.issuer + "/jwks",
                    }
                elif self.path == "/jwks":
                    body = {"keys": [provider.jwk(kid) for kid in provider.keys]}
                else:
                    self.send_error(404)
                    return
                self.reply_json(200, body)

        self.server, self.issuer = serve(Handler)

    def add_key(self, kid: str) -> None:
        self.keys[kid] = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def jwk(self, kid: str) -> dict[str, Any]:
        public = jwt.algorithms.RSAAlgorithm.to_jwk(self.keys[kid].public_key(), as_dict=True)
        return {**public, "kid": kid, "alg": "RS256", "use": "sig"}

    def token(self, kid: str, **claims: Any) -> str:
        now = int(time.time())
        body = {"iss": self.issuer, "aud": AUDIENCE, "sub": "ada", "iat": now, "exp": now + 300}
        body.update(roles=["herald-admins"], **claims)
        return jwt.encode(body, self.keys[kid], algorithm="RS256", headers={"kid": kid})


@pytest.fixture
def provider() -> Iterator[Provider]:
    running = Provider()
    yield running
    running.server.shutdown()


def verifier(provider: Provider, **overrides: Any) -> TokenVerifier:
    settings = make_settings(
        oidc_issuer=provider.issuer,
        oidc_client_id="herald-admin",
        oidc_audience=AUDIENCE,
        oidc_role_map={"herald-admins": "admin"},
        **overrides,
    )
    return TokenVerifier(settings)


async def test_keys_come_through_the_discovery_document(provider):
    provider.add_key("k1")
    tokens = verifier(provider)
    principal = await tokens.authenticate(provider.token("k1"))
    assert principal.user_id == "ada" and principal.roles == {"admin"}
    assert provider.hits == ["/.well-known/openid-configuration", "/jwks"]
    # Another token: the keys in hand, no request.
    await tokens.authenticate(provider.token("k1", sub="bob"))
    assert len(provider.hits) == 2


async def test_a_document_naming_another_issuer_is_not_trusted(provider):
    provider.add_key("k1")
    provider.issuer_in_document = "https://somebody.else"
    tokens = verifier(provider)
    with pytest.raises(UnauthenticatedError, match="key that is not known"):
        await tokens.authenticate(provider.token("k1"))
    # Its jwks_uri was never read.
    assert provider.hits == ["/.well-known/openid-configuration"]


async def test_a_provider_down_is_asked_again_once_per_interval(provider):
    provider.add_key("k1")
    provider.up = False
    tokens = verifier(provider, jwt_jwks_min_refresh_seconds=0.5)
    for _ in range(10):
        with pytest.raises(UnauthenticatedError, match="key that is not known"):
            await tokens.authenticate(provider.token("k1"))
    assert provider.hits == ["/.well-known/openid-configuration"]
    provider.up = True
    await asyncio.sleep(0.6)
    principal = await tokens.authenticate(provider.token("k1"))
    assert principal.roles == {"admin"}


async def test_a_rotated_key_is_fetched_and_a_removed_one_stops_verifying(provider):
    provider.add_key("k1")
    tokens = verifier(provider, jwt_jwks_min_refresh_seconds=0)
    old = provider.token("k1")
    await tokens.authenticate(old)
    provider.keys.pop("k1")
    provider.add_key("k2")
    principal = await tokens.authenticate(provider.token("k2", sub="carol"))
    assert principal.user_id == "carol"
    # k1 left the set with that fetch: a token it signed is no longer trusted, even one
    # verified (and cached) before.
    with pytest.raises(UnauthenticatedError, match="key that is not known"):
        await tokens.authenticate(old)
