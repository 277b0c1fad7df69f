"""Tokens from the auth service: verification, roles and (for development) minting.

The auth service issues JWTs with claims ``sub`` (user id), ``roles`` (list), ``type`` (``access``)
and ``exp``. Herald verifies them with the algorithm pinned by configuration, so a token that names
another algorithm (``none``, or HS256 signed with the public key) is refused before any key is used.

The key is one configured secret or public key, or the auth service's JWKS
(``HERALD_JWT_JWKS_URL``): keys by ``kid``, fetched with httpx and parsed by PyJWT's
``PyJWKSet``, used for ``jwt_jwks_cache_seconds``, and fetched again when a token names a
``kid`` the set lacks (a rotation), at most once per ``jwt_jwks_min_refresh_seconds`` so that
tokens with forged kids cannot turn Herald into a flood of requests to the provider.

With ``HERALD_OIDC_ISSUER``, access tokens from that OpenID provider are accepted too
(:class:`OidcTokens`): a token whose ``iss`` names the provider is verified with the keys its
discovery document points at (the same :class:`JwksKeys`), its audience and expiry checked,
and its roles claim mapped to Herald's roles by ``HERALD_OIDC_ROLE_MAP``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

import httpx
import jwt

from backend.config import JwtAlgorithm, Settings
from backend.errors import ForbiddenError, UnauthenticatedError

log = logging.getLogger(__name__)


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


class Scope(StrEnum):
    """A narrower grant than a role, held by API keys: one family of operations."""

    EVENTS_SEND = "events:send"
    TEMPLATES_READ = "templates:read"
    EVENT_TYPES_READ = "event_types:read"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the token's subject and roles, or an API key's id, roles and scopes.

    An API key's principal has ``user_id`` ``api-key:<prefix>``: rate limits count per key
    and the audit log names the key. ``key_name`` is the service it was made for.

    ``tenant_id``: the tenant the token (its ``HERALD_JWT_TENANT_CLAIM`` claim) or the key is
    bound to; such a caller reads and changes only that tenant's data (backend.services.tenants).
    None: not bound, as every caller of a single-product install.
    """

    user_id: str
    roles: frozenset[str] = field(default_factory=frozenset)
    expires_at: datetime | None = None
    scopes: frozenset[str] = field(default_factory=frozenset)
    key_name: str | None = None
    tenant_id: str | None = None

    def has_any(self, roles: Iterable[str]) -> bool:
        return not self.roles.isdisjoint(roles)


class JwksKeys:
    """The auth service's signing keys by ``kid``, from its JWKS (see the module docstring)."""

    def __init__(
        self, settings: Settings, *, url: str | None = None, algorithm: str | None = None
    ) -> None:
        """The auth service's JWKS (``HERALD_JWT_JWKS_URL``), or another set at ``url`` (an
        OpenID provider's ``jwks_uri``) with the same cache and refresh settings."""
        found = url or settings.jwt_jwks_url
        assert found is not None
        self.url = found
        self._algorithm = algorithm or settings.jwt_algorithm.value
        self._ttl = settings.jwt_jwks_cache_seconds
        self._min_refresh = settings.jwt_jwks_min_refresh_seconds
        self._timeout = settings.jwt_jwks_timeout_seconds
        self._keys: dict[str, Any] = {}
        self._fetched_at = -math.inf  # when the set in hand was fetched
        self._attempted_at = -math.inf  # when a fetch last started, whatever its outcome
        self._fetch: asyncio.Future[None] | None = None
        # Called with the kids that left the set: tokens they signed must not stay trusted.
        self.on_removed: list[Any] = []

    def cached(self, kid: str | None) -> Any | None:
        """The key for ``kid`` from the set in hand, without fetching."""
        if kid is None:
            return next(iter(self._keys.values())) if len(self._keys) == 1 else None
        return self._keys.get(kid)

    async def key_for(self, kid: str | None) -> Any:
        """The key that verifies tokens naming ``kid``; fetches the set when it is stale, or
        when it lacks ``kid`` and no fetch started within ``min_refresh`` seconds."""
        running = self._fetch
        if running is not None and not running.done():
            # A fetch is on its way (a rotation seen by a concurrent request): share it.
            await asyncio.shield(running)
        now = time.monotonic()
        if now - self._fetched_at > self._ttl and now - self._attempted_at >= self._min_refresh:
            await self._refresh()
        key = self.cached(kid)
        if key is None and time.monotonic() - self._attempted_at >= self._min_refresh:
            await self._refresh()
            key = self.cached(kid)
        if key is None:
            raise UnauthenticatedError("The token is signed with a key that is not known")
        return key

    async def _refresh(self) -> None:
        # One fetch at a time per process: concurrent requests with a new kid share it.
        running = self._fetch
        if running is not None and not running.done():
            await asyncio.shield(running)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._fetch = future
        self._attempted_at = time.monotonic()
        try:
            await self._load()
        finally:
            future.set_result(None)

    async def _load(self) -> None:
        try:
            async with httpx.AsyncClient(timeout=self._timeout) as client:
                response = await client.get(self.url, headers={"Accept": "application/json"})
                response.raise_for_status()
                document = response.json()
            if not isinstance(document, dict):
                raise ValueError("the JWKS is not a JSON object")
            jwk_set = jwt.PyJWKSet.from_dict(document)
        except (httpx.HTTPError, ValueError, jwt.PyJWTError) as exc:
            # The keys in hand stay in use; the next fetch waits for min_refresh.
            log.warning("could not fetch the JWKS at %s: %s", self.url, exc)
            return
        keys: dict[str, Any] = {}
        for jwk in jwk_set.keys:
            # Only keys for the pinned algorithm: a JWKS may list others (encryption keys,
            # another algorithm), and none of them may verify a token here.
            if jwk.algorithm_name != self._algorithm or jwk.public_key_use not in (None, "sig"):
                continue
            keys[jwk.key_id or ""] = jwk.key
        removed = set(self._keys) - set(keys)
        self._keys = keys
        self._fetched_at = time.monotonic()
        log.info("JWKS fetched from %s: %d keys", self.url, len(keys))
        if removed:
            for callback in self.on_removed:
                callback(removed)


class OidcTokens:
    """Access tokens from the OpenID provider at ``HERALD_OIDC_ISSUER``.

    The provider's discovery document names its ``jwks_uri``; the keys are kept and refreshed
    as the auth service's JWKS is (:class:`JwksKeys`). A token passes when it is signed by one
    of them with the pinned algorithm, its ``iss`` is the issuer, its ``aud`` holds
    ``HERALD_OIDC_AUDIENCE`` and it has not expired. Its roles are the values of
    ``HERALD_OIDC_ROLES_CLAIM`` that ``HERALD_OIDC_ROLE_MAP`` maps; any other value gives nothing.
    """

    def __init__(self, settings: Settings) -> None:
        assert settings.oidc_issuer is not None and settings.oidc_audience is not None
        self.issuer = settings.oidc_issuer
        self._settings = settings
        self._audience = settings.oidc_audience
        self._algorithm = settings.oidc_algorithm.value
        self._leeway = settings.jwt_leeway_seconds
        self._claim_path = settings.oidc_roles_claim.split(".")
        self._role_map = dict(settings.oidc_role_map)
        self.jwks: JwksKeys | None = None
        self._discovery_attempted_at = -math.inf
        self._discovery: asyncio.Future[None] | None = None
        # Called with the kids that left the provider's set (see JwksKeys.on_removed).
        self.on_removed: list[Any] = []

    @property
    def discovery_url(self) -> str:
        return self.issuer.rstrip("/") + "/.well-known/openid-configuration"

    def cached(self, kid: str | None) -> Any | None:
        return self.jwks.cached(kid) if self.jwks is not None else None

    async def key_for(self, kid: str | None) -> Any:
        if self.jwks is None:
            await self._discover()
        if self.jwks is None:
            raise UnauthenticatedError("The token is signed with a key that is not known")
        return await self.jwks.key_for(kid)

    async def _discover(self) -> None:
        running = self._discovery
        if running is not None and not running.done():
            await asyncio.shield(running)
            return
        # A provider that is down is asked again at most once per min_refresh seconds.
        if (
            time.monotonic() - self._discovery_attempted_at
            < self._settings.jwt_jwks_min_refresh_seconds
        ):
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._discovery = future
        self._discovery_attempted_at = time.monotonic()
        try:
            jwks_uri = await self._jwks_uri()
            if jwks_uri is not None:
                jwks = JwksKeys(self._settings, url=jwks_uri, algorithm=self._algorithm)
                jwks.on_removed.extend(self.on_removed)
                self.jwks = jwks
        finally:
            future.set_result(None)

    async def _jwks_uri(self) -> str | None:
        try:
            async with httpx.AsyncClient(timeout=self._settings.jwt_jwks_timeout_seconds) as client:
                response = await client.get(
                    self.discovery_url, headers={"Accept": "application/json"}
                )
                response.raise_for_status()
                document = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            log.warning(
                "could not read the OpenID discovery document at %s: %s", self.discovery_url, exc
            )
            return None
        if not isinstance(document, dict) or document.get("issuer") != self.issuer:
            # OpenID Connect Discovery 1.0, section 4.3: the issuer must match exactly.
            log.warning("the discovery document at %s names another issuer", self.discovery_url)
            return None
        jwks_uri = document.get("jwks_uri")
        if not isinstance(jwks_uri, str) or not jwks_uri.startswith(("https://", "http://")):
            log.warning("the discovery document at %s has no jwks_uri", self.discovery_url)
            return None
        return jwks_uri

    def verify(self, token: str, key: Any) -> Principal:
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[self._algorithm],
                issuer=self.issuer,
                audience=self._audience,
                leeway=self._leeway,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.PyJWTError as exc:
            raise UnauthenticatedError(_refusal(exc)) from exc
        sub = claims.get("sub")
        if not isinstance(sub, str) or not sub:
            raise UnauthenticatedError("The token lacks the 'sub' claim")
        return Principal(
            user_id=sub,
            roles=self.roles(claims),
            expires_at=_expiry(claims["exp"]),
            tenant_id=_tenant(claims, self._settings.jwt_tenant_claim),
        )

    def roles(self, claims: dict[str, Any]) -> frozenset[str]:
        """Herald's roles for the values of the roles claim (a list, or one string)."""
        value: Any = claims
        for part in self._claim_path:
            value = value.get(part) if isinstance(value, dict) else None
        if isinstance(value, str):
            values = [value]
        elif isinstance(value, list):
            values = [v for v in value if isinstance(v, str)]
        else:
            values = []
        return frozenset(self._role_map[v] for v in values if v in self._role_map)


class TokenVerifier:
    """Verifies bearer tokens with the configured, pinned algorithm."""

    CACHE_SIZE = 10_000

    def __init__(self, settings: Settings) -> None:
        self._algorithm = settings.jwt_algorithm.value
        self.jwks: JwksKeys | None = None
        if settings.jwt_jwks_url:
            self.jwks = JwksKeys(settings)
            self.jwks.on_removed.append(lambda _: self._cache.clear())
            self._key: Any = None
        elif settings.jwt_algorithm is JwtAlgorithm.RS256:
            assert settings.jwt_public_key is not None
            self._key = settings.jwt_public_key
        else:
            assert settings.jwt_secret is not None
            self._key = settings.jwt_secret.get_secret_value()
        self._issuer = settings.jwt_issuer
        self._audience = settings.jwt_audience
        self._leeway = settings.jwt_leeway_seconds
        self._tenant_claim = settings.jwt_tenant_claim
        self._cache: dict[str, Principal] = {}
        self.oidc: OidcTokens | None = None
        if settings.oidc_issuer:
            self.oidc = OidcTokens(settings)
            self.oidc.on_removed.append(lambda _: self._cache.clear())

    def _cached(self, token: str) -> Principal | None:
        cached = self._cache.get(token)
        if cached is not None:
            expires_at = cached.expires_at
            if expires_at is not None and expires_at.timestamp() + self._leeway > time.time():
                return cached
            self._cache.pop(token, None)
        return None

    def _remember(self, token: str, principal: Principal) -> Principal:
        if len(self._cache) >= self.CACHE_SIZE:
            self._cache.pop(next(iter(self._cache)))
        self._cache[token] = principal
        return principal

    def verify(self, token: str) -> Principal:
        """Verify a token; a token verified before is answered from a small cache, with its
        expiry checked again (services send thousands of requests with one token). With a
        JWKS, only the keys already fetched are used: :meth:`authenticate` fetches."""
        cached = self._cached(token)
        if cached is not None:
            return cached
        if self._from_provider(token):
            assert self.oidc is not None
            key = self.oidc.cached(_kid(token))
            if key is None:
                raise UnauthenticatedError("The token is signed with a key that is not known")
            return self._remember(token, self.oidc.verify(token, key))
        key = self._key
        if self.jwks is not None:
            key = self.jwks.cached(_kid(token))
            if key is None:
                raise UnauthenticatedError("The token is signed with a key that is not known")
        return self._remember(token, self._verify(token, key))

    async def authenticate(self, token: str) -> Principal:
        """Verify a token, fetching the JWKS when the token names a key not seen yet."""
        cached = self._cached(token)
        if cached is not None:
            return cached
        if self._from_provider(token):
            assert self.oidc is not None
            key = await self.oidc.key_for(_kid(token))
            return self._remember(token, self.oidc.verify(token, key))
        if self.jwks is None:
            return self.verify(token)
        key = await self.jwks.key_for(_kid(token))
        return self._remember(token, self._verify(token, key))

    def _from_provider(self, token: str) -> bool:
        """Whether the token names the OpenID provider as its issuer. Only a routing hint:
        the provider's keys then verify it, and a token that merely claims this issuer fails
        there; a token naming any other issuer meets the auth service's key and its checks."""
        if self.oidc is None:
            return False
        try:
            claims = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError as exc:
            raise UnauthenticatedError("The token is malformed") from exc
        return claims.get("iss") == self.oidc.issuer

    def _verify(self, token: str, key: Any) -> Principal:
        required = ["exp", "sub"]
        if self._issuer:
            required.append("iss")
        if self._audience:
            required.append("aud")
        options: jwt.types.Options = {"require": required}
        try:
            claims = jwt.decode(
                token,
                key,
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
        return Principal(
            user_id=sub,
            roles=frozenset(roles),
            expires_at=_expiry(claims["exp"]),
            tenant_id=_tenant(claims, self._tenant_claim),
        )

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


def _kid(token: str) -> str | None:
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise UnauthenticatedError("The token is malformed") from exc
    kid = header.get("kid")
    return kid if isinstance(kid, str) else None


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


# A tenant id as tokens and keys carry it: the same shape backend.services.tenants accepts.
TENANT_ID_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


def _tenant(claims: dict[str, Any], claim: str) -> str | None:
    """The tenant a token is bound to: its tenant claim, or None without one. A claim that
    cannot be a tenant id refuses the token rather than leaving it unbound."""
    value = claims.get(claim)
    if value is None:
        return None
    if not isinstance(value, str) or not TENANT_ID_RE.match(value):
        raise UnauthenticatedError(f"The token's '{claim}' claim is not a tenant id")
    return value


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
    tenant: str | None = None,
) -> str:
    """Sign a token as the auth service would. For development, scripts and tests.
    ``tenant`` binds the token to a tenant (the ``HERALD_JWT_TENANT_CLAIM`` claim)."""
    issued = now or datetime.now(UTC)
    claims: dict[str, Any] = {
        "sub": sub,
        "roles": sorted(set(roles)),
        "type": token_type,
        "iat": int(issued.timestamp()),
        "exp": int((issued + ttl).timestamp()),
        "jti": uuid.uuid4().hex,
    }
    if tenant is not None:
        claims[settings.jwt_tenant_claim] = tenant
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
