"""A development stand-in for the auth service: user profiles and tokens for demo users.

It serves the endpoints Herald's :class:`~backend.services.users.UserDirectory` reads (one
profile, the paged list) with the auth service's shapes, a bulk profile endpoint
(:data:`BULK_PROFILES_PATH`, for ``HERALD_AUTH_BULK_PROFILES_PATH``), and two ``/dev``
endpoints the admin page uses to sign in as a demo user: the list of users with their roles,
and a token for one.
It also signs people in as the auth service does: ``POST`` login and password to
:data:`LOGIN_PATH` for an access token and a refresh token, and the refresh token to
:data:`REFRESH_PATH` for a new pair (the refresh token is single-use: each refresh rotates it),
and the refresh token to :data:`LOGOUT_PATH` to revoke it when the person signs out.
Every demo user's password is :data:`DEMO_PASSWORD` unless the users file gives one.
Tokens are signed with Herald's own JWT settings, so Herald accepts them.
"""

from __future__ import annotations

import hmac
import secrets
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, Header, HTTPException, Query
from fastapi.middleware.cors import CORSMiddleware
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from backend.auth import Role, mint_token
from backend.config import JwtAlgorithm, Settings

DEMO_USERS_FILE = Path(__file__).with_name("demo_users.json")
PREFIX = "/api/v1/auth"
MAX_PAGE_SIZE = 1000
# Many profiles in one request: POST {"ids": [...]} answered with {"items": [...]}, unknown ids
# left out. Set HERALD_AUTH_BULK_PROFILES_PATH to this path to have Herald use it.
BULK_PROFILES_PATH = PREFIX + "/users/bulk"
# Signing in with login and password, and refreshing: called from the admin page's origin.
SESSION_PREFIX = PREFIX + "/session"
LOGIN_PATH = SESSION_PREFIX + "/login"
REFRESH_PATH = SESSION_PREFIX + "/refresh"
LOGOUT_PATH = SESSION_PREFIX + "/logout"
DEMO_PASSWORD = "herald-demo"  # noqa: S105 - the development stand-in's documented password


class StandinUser(BaseModel):
    """One user as the users file holds it: the auth service's profile plus roles."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    email: str
    first_name: str
    last_name: str
    login: str
    phone: str | None = None
    locale: str | None = None
    timezone: str | None = None
    roles: list[Role]
    password: str = DEMO_PASSWORD

    def profile(self) -> dict[str, Any]:
        """The profile as the auth service returns it: no roles."""
        return self.model_dump(mode="json", exclude={"roles", "password"})


class BulkProfilesRequest(BaseModel):
    ids: list[str] = Field(max_length=MAX_PAGE_SIZE)


class TokenRequest(BaseModel):
    user_id: str


class TokenResponse(BaseModel):
    access_token: str
    token_type: str = "bearer"  # noqa: S105 - the OAuth token type, not a secret


class LoginRequest(BaseModel):
    login: str
    password: str


class RefreshRequest(BaseModel):
    refresh_token: str


class TokenPair(BaseModel):
    access_token: str
    refresh_token: str
    token_type: str = "bearer"  # noqa: S105 - the OAuth token type, not a secret
    expires_in: int


def load_users(users_file: Path) -> list[StandinUser]:
    """Read and validate a users file (a JSON list of users); ids must be unique."""
    users = TypeAdapter(list[StandinUser]).validate_json(users_file.read_bytes())
    seen: set[str] = set()
    for user in users:
        if user.id in seen:
            raise ValueError(f"{users_file}: user id {user.id!r} appears twice")
        seen.add(user.id)
    return users


def create_auth_standin(
    users_file: Path, settings: Settings, *, access_ttl: timedelta = timedelta(minutes=15)
) -> FastAPI:
    """Build the stand-in serving the users in ``users_file``; the access tokens its login and
    refresh endpoints issue live ``access_ttl``.

    When ``settings.auth_api_token`` is set, the profile endpoints require it as a bearer token,
    as the real service would; the ``/dev`` endpoints stay open and allow any origin, because the
    admin page calls them from another port.
    """
    if settings.jwt_algorithm is JwtAlgorithm.RS256 and settings.jwt_private_key is None:
        raise ValueError("The auth stand-in mints tokens: set HERALD_JWT_PRIVATE_KEY for RS256")
    users = load_users(users_file)
    by_id = {user.id: user for user in users}
    api_token = settings.auth_api_token.get_secret_value() if settings.auth_api_token else ""

    def check_caller(authorization: str | None) -> None:
        if not api_token:
            return
        expected = f"Bearer {api_token}"
        if authorization is None or not hmac.compare_digest(
            authorization.encode(), expected.encode()
        ):
            raise HTTPException(status_code=401, detail="a valid API token is required")

    app = FastAPI(title="Herald auth stand-in (development only)")

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(PREFIX + "/users/user-details/{user_id}")
    async def user_details(
        user_id: str, authorization: Annotated[str | None, Header()] = None
    ) -> dict[str, Any]:
        check_caller(authorization)
        user = by_id.get(user_id)
        if user is None:
            raise HTTPException(status_code=404, detail="user not found")
        return user.profile()

    @app.post(BULK_PROFILES_PATH)
    async def bulk_profiles(
        request: BulkProfilesRequest, authorization: Annotated[str | None, Header()] = None
    ) -> dict[str, Any]:
        check_caller(authorization)
        found = (by_id.get(user_id) for user_id in dict.fromkeys(request.ids))
        return {"items": [user.profile() for user in found if user is not None]}

    @app.get(PREFIX + "/users")
    async def list_users(
        page: Annotated[int, Query(ge=1)] = 1,
        size: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = 100,
        authorization: Annotated[str | None, Header()] = None,
    ) -> dict[str, Any]:
        check_caller(authorization)
        start = (page - 1) * size
        return {
            "items": [user.profile() for user in users[start : start + size]],
            "page": page,
            "size": size,
            "total": len(users),
        }

    # The dev endpoints live in their own sub-application so that the any-origin CORS policy
    # covers them and not the profile endpoints.
    dev = FastAPI(openapi_url=None)
    dev.add_middleware(
        CORSMiddleware,
        allow_origins=["*"],
        allow_methods=["GET", "POST"],
        allow_headers=["Content-Type"],
    )

    @dev.get("/users")
    async def demo_users() -> list[dict[str, Any]]:
        return [user.model_dump(mode="json", exclude={"password"}) for user in users]

    @dev.post("/token")
    async def demo_token(request: TokenRequest) -> TokenResponse:
        user = by_id.get(request.user_id)
        if user is None:
            raise HTTPException(status_code=404, detail="user not found")
        return TokenResponse(access_token=mint_token(settings, sub=user.id, roles=user.roles))

    app.mount(PREFIX + "/dev", dev)

    # Signing in: its own sub-application too, callable from any origin (the admin page).
    by_login = {user.login: user for user in users}
    refresh_tokens: dict[str, str] = {}  # refresh token -> user id; each is used once

    def pair(user: StandinUser) -> TokenPair:
        refresh = secrets.token_urlsafe(32)
        refresh_tokens[refresh] = user.id
        access = mint_token(settings, sub=user.id, roles=user.roles, ttl=access_ttl)
        return TokenPair(
            access_token=access,
            refresh_token=refresh,
            expires_in=int(access_ttl.total_seconds()),
        )

    session = FastAPI(openapi_url=None)
    session.add_middleware(
        CORSMiddleware, allow_origins=["*"], allow_methods=["POST"], allow_headers=["Content-Type"]
    )

    @session.post("/login")
    async def login(request: LoginRequest) -> TokenPair:
        user = by_login.get(request.login)
        if user is None or not hmac.compare_digest(
            user.password.encode(), request.password.encode()
        ):
            raise HTTPException(status_code=401, detail="wrong login or password")
        return pair(user)

    @session.post("/refresh")
    async def refresh(request: RefreshRequest) -> TokenPair:
        user_id = refresh_tokens.pop(request.refresh_token, None)
        user = by_id.get(user_id) if user_id is not None else None
        if user is None:
            raise HTTPException(status_code=401, detail="the refresh token is not valid")
        return pair(user)

    @session.post("/logout", status_code=204)
    async def logout(request: RefreshRequest) -> None:
        # As OAuth token revocation (RFC 7009): an unknown or spent token is no error, the
        # person is signed out either way.
        refresh_tokens.pop(request.refresh_token, None)

    app.mount(SESSION_PREFIX, session)
    return app
