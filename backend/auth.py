"""Tokens from the auth service: verification, roles and (for development) minting.

The auth service issues JWTs with claims ``sub`` (user id), ``roles`` (list), ``type`` (``access``)
and ``exp``. Herald verifies them with the algorithm pinned by configuration, so a token that names
another algorithm (``none``, or HS256 signed with the public key) is refused before any key is used.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

import jwt

from backend.config import JwtAlgorithm, Settings
from backend.errors import ForbiddenError, UnauthenticatedError


class Role(StrEnum):
    ADMIN = "admin"
    MANAGER = "manager"
    SERVICE = "service"
    USER = "user"


ADMINS = frozenset({Role.ADMIN})
MANAGE_TEMPLATES = frozenset({Role.ADMIN, Role.MANAGER})
SEND_EVENTS = frozenset({Role.ADMIN, Role.SERVICE})
# deleteRecipient: admins, and the auth service when it deletes an account.
FORGET_USERS = frozenset({Role.ADMIN, Role.SERVICE})
# 9999-12-31T23:59:59Z: the last second a datetime holds.
MAX_EXP = 253_402_300_799


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the token's subject and roles."""

    user_id: str
    roles: frozenset[str] = field(default_factory=frozenset)
    expires_at: datetime | None = None

    def has_any(self, roles: Iterable[str]) -> bool:
        return not self.roles.isdisjoint(roles)


class TokenVerifier:
    """Verifies bearer tokens with the configured, pinned algorithm."""

    CACHE_SIZE = 10_000

    def __init__(self, settings: Settings) -> None:
        self._algorithm = settings.jwt_algorithm.value
        if settings.jwt_algorithm is JwtAlgorithm.RS256:
            assert settings.jwt_public_key is not None
            self._key: Any = settings.jwt_public_key
        else:
            assert settings.jwt_secret is not None
            self._key = settings.jwt_secret.get_secret_value()
        self._issuer = settings.jwt_issuer
        self._audience = settings.jwt_audience
        self._leeway = settings.jwt_leeway_seconds
        self._cache: dict[str, Principal] = {}

    def verify(self, token: str) -> Principal:
        """Verify a token; a token verified before is answered from a small cache, with its
        expiry checked again (services send thousands of requests with one token)."""
        cached = self._cache.get(token)
        if cached is not None:
            expires_at = cached.expires_at
            if expires_at is not None and expires_at.timestamp() + self._leeway > time.time():
                return cached
            self._cache.pop(token, None)
        principal = self._verify(token)
        if len(self._cache) >= self.CACHE_SIZE:
            self._cache.pop(next(iter(self._cache)))
        self._cache[token] = principal
        return principal

    def _verify(self, token: str) -> Principal:
        required = ["exp", "sub"]
        if self._issuer:
            required.append("iss")
        if self._audience:
            required.append("aud")
        options: jwt.types.Options = {"require": required}
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=[self._algorithm],
                issuer=self._issuer,
                audience=self._audience,
                leeway=self._leeway,
                options=options,
            )
        except jwt.PyJWTError as exc:
            raise UnauthenticatedError(_refusal(exc)) from exc
        if claims.get("type") != "access":
            raise UnauthenticatedError("Only access tokens are accepted")
        sub = claims.get("sub")
        if not isinstance(sub, str) or not sub:
            raise UnauthenticatedError("The token lacks the 'sub' claim")
        roles = claims.get("roles", [])
        if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
            raise UnauthenticatedError("The token's 'roles' claim must be a list of strings")
        return Principal(user_id=sub, roles=frozenset(roles), expires_at=_expiry(claims["exp"]))

    def verify_header(self, authorization: str | None) -> Principal:
        """Verify an ``Authorization: Bearer <jwt>`` value."""
        if not authorization:
            raise UnauthenticatedError(
                "Authentication required: send 'Authorization: Bearer <jwt>'"
            )
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise UnauthenticatedError("The Authorization header must be 'Bearer <jwt>'")
        return self.verify(token.strip())


# What a client is told for each way PyJWT refuses a token, the first match winning.
_REFUSALS: tuple[tuple[type[jwt.PyJWTError], str], ...] = (
    (jwt.ExpiredSignatureError, "The token has expired"),
    (jwt.ImmatureSignatureError, "The token is not valid yet"),
    (jwt.InvalidAlgorithmError, "The token is signed with an algorithm not allowed"),
    (jwt.InvalidSignatureError, "The token signature is invalid"),
    (jwt.InvalidIssuerError, "The token issuer is not accepted"),
    (jwt.InvalidAudienceError, "The token audience is not accepted"),
)


def _refusal(exc: jwt.PyJWTError) -> str:
    for kind, reason in _REFUSALS:
        if isinstance(exc, kind):
            return reason
    if isinstance(exc, jwt.MissingRequiredClaimError):
        return f"The token lacks the '{exc.claim}' claim"
    return "The token is malformed"


def _expiry(exp: Any) -> datetime:
    """The ``exp`` claim as a time. PyJWT compares ``int(exp)`` with the clock, so a string
    ("9999999999") or a number no calendar holds (10^30) passes it: such a token is malformed,
    not an internal error."""
    if isinstance(exp, bool) or not isinstance(exp, int | float) or not 0 < exp <= MAX_EXP:
        raise UnauthenticatedError("The token's 'exp' claim must be a NumericDate")
    return datetime.fromtimestamp(exp, tz=UTC)


def require_roles(principal: Principal | None, roles: frozenset[Role]) -> Principal:
    if principal is None:
        raise UnauthenticatedError("Authentication required")
    if not principal.has_any(roles):
        wanted = ", ".join(sorted(roles))
        raise ForbiddenError(f"This operation needs one of the roles: {wanted}")
    return principal


def mint_token(
    settings: Settings,
    *,
    sub: str,
    roles: Iterable[str],
    ttl: timedelta = timedelta(hours=1),
    token_type: str = "access",
    now: datetime | None = None,
) -> str:
    """Sign a token as the auth service would. For development, scripts and tests."""
    issued = now or datetime.now(UTC)
    claims: dict[str, Any] = {
        "sub": sub,
        "roles": sorted(set(roles)),
        "type": token_type,
        "iat": int(issued.timestamp()),
        "exp": int((issued + ttl).timestamp()),
        "jti": uuid.uuid4().hex,
    }
    if settings.jwt_issuer:
        claims["iss"] = settings.jwt_issuer
    if settings.jwt_audience:
        claims["aud"] = settings.jwt_audience
    if settings.jwt_algorithm is JwtAlgorithm.RS256:
        if settings.jwt_private_key is None:
            raise ValueError("HERALD_JWT_PRIVATE_KEY is needed to mint RS256 tokens")
        key: Any = settings.jwt_private_key.get_secret_value()
    else:
        assert settings.jwt_secret is not None
        key = settings.jwt_secret.get_secret_value()
    return jwt.encode(claims, key, algorithm=settings.jwt_algorithm.value)
