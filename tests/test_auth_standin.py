"""The auth-service stand-in, started as ``herald auth-standin`` and called over real HTTP."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from backend.auth import TokenVerifier
from backend.errors import UnauthenticatedError
from backend.standins.auth_service import DEMO_USERS_FILE, create_auth_standin
from tests.conftest import ROOT, free_port, make_settings, start_herald

TEST_JWT_SECRET = make_settings().jwt_secret.get_secret_value()  # type: ignore[union-attr]
E164 = re.compile(r"^\+[1-9]\d{7,14}$")
USERS = "/api/v1/auth/users"
DETAILS = "/api/v1/auth/users/user-details/"
BULK = "/api/v1/auth/users/bulk"


def standin_env(**overrides: str) -> dict[str, str]:
    env = {
        **os.environ,
        "HERALD_ENVIRONMENT": "test",
        "HERALD_JWT_SECRET": TEST_JWT_SECRET,
        "HERALD_LOG_LEVEL": "WARNING",
    }
    env.update(overrides)
    return env


def start_standin(*args: str) -> tuple[str, subprocess.Popen[bytes]]:
    port = free_port()
    process = start_herald(
        "auth-standin", "--port", str(port), *args, env=standin_env(), stderr=subprocess.PIPE
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the stand-in exited: {process.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return url, process
        except httpx.TransportError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError("the stand-in did not start within 20 s")


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()


@pytest.fixture(scope="module")
def standin() -> Iterator[str]:
    url, process = start_standin()
    yield url
    stop(process)


@pytest.fixture
def client(standin: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=standin, timeout=5) as c:
        yield c


def test_profile_has_the_auth_service_shape_without_roles(client):
    response = client.get(DETAILS + "demo-manager")
    assert response.status_code == 200
    assert response.json() == {
        "id": "demo-manager",
        "email": "manager@example.com",
        "first_name": "Mariana",
        "last_name": "Costa",
        "login": "mariana.costa",
        "phone": "+12025550102",
        "locale": "pt-BR",
        "timezone": "America/Sao_Paulo",
    }


def test_unknown_user_is_404(client):
    response = client.get(DETAILS + "nobody")
    assert response.status_code == 404
    assert response.json() == {"detail": "user not found"}


def test_bulk_profiles_answer_the_known_ids_in_the_profile_shape(client):
    asked = ["demo-manager", "nobody", "demo-manager", "demo-admin"]
    response = client.post(BULK, json={"ids": asked})
    assert response.status_code == 200
    items = response.json()["items"]
    # Each known id once, as the one-profile endpoint answers it; unknown ids left out.
    assert [item["id"] for item in items] == ["demo-manager", "demo-admin"]
    assert items[0] == client.get(DETAILS + "demo-manager").json()
    assert client.post(BULK, json={"ids": []}).json() == {"items": []}
    assert client.post(BULK, json={"ids": [f"u-{n}" for n in range(1001)]}).status_code == 422


def test_user_list_is_paged(client):
    first = client.get(USERS, params={"page": 1, "size": 5}).json()
    assert (first["page"], first["size"], first["total"]) == (1, 5, 12)
    assert len(first["items"]) == 5
    assert "roles" not in first["items"][0]
    last = client.get(USERS, params={"page": 3, "size": 5}).json()
    assert len(last["items"]) == 2
    middle = client.get(USERS, params={"page": 2, "size": 5}).json()
    past_the_end = client.get(USERS, params={"page": 4, "size": 5}).json()
    assert past_the_end["items"] == []
    everyone = client.get(USERS, params={"page": 1, "size": 1000}).json()["items"]
    assert first["items"] + middle["items"] + last["items"] == everyone
    assert len({u["id"] for u in everyone}) == 12
    assert client.get(USERS, params={"page": 0, "size": 5}).status_code == 422
    assert client.get(USERS, params={"page": 1, "size": 1001}).status_code == 422


def test_demo_users_cover_roles_locales_and_contacts(client):
    users = client.get("/api/v1/auth/dev/users").json()
    assert len(users) == 12
    roles = [role for user in users for role in user["roles"]]
    assert roles.count("admin") == 1
    assert roles.count("manager") == 1
    assert roles.count("service") == 1
    assert {user["locale"] for user in users} == {"en", "pt-BR", "ru", "de"}
    assert len({user["timezone"] for user in users}) >= 5
    for user in users:
        assert user["email"].endswith("@example.com"), user
        assert E164.match(user["phone"]), user


def test_dev_token_is_accepted_by_herald_with_the_users_roles(client):
    response = client.post("/api/v1/auth/dev/token", json={"user_id": "demo-admin"})
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "bearer"

    principal = TokenVerifier(make_settings()).verify(body["access_token"])

    assert principal.user_id == "demo-admin"
    assert principal.roles == {"admin"}


def test_dev_token_is_signed_with_herald_s_key_not_another(client):
    token = client.post("/api/v1/auth/dev/token", json={"user_id": "demo-user-ivan"}).json()
    other = make_settings(jwt_secret="another-secret-entirely-0123456789abcdef")
    with pytest.raises(UnauthenticatedError):
        TokenVerifier(other).verify(token["access_token"])


def test_dev_token_for_unknown_user_is_404(client):
    response = client.post("/api/v1/auth/dev/token", json={"user_id": "nobody"})
    assert response.status_code == 404


def test_dev_endpoints_allow_any_origin_and_profiles_do_not(client):
    preflight = client.options(
        "/api/v1/auth/dev/token",
        headers={
            "Origin": "http://localhost:5173",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "*"
    listed = client.get("/api/v1/auth/dev/users", headers={"Origin": "http://localhost:5173"})
    assert listed.headers["access-control-allow-origin"] == "*"
    profile = client.get(DETAILS + "demo-admin", headers={"Origin": "http://localhost:5173"})
    assert "access-control-allow-origin" not in profile.headers


def test_users_option_serves_another_file(tmp_path: Path):
    users_file = tmp_path / "users.json"
    users_file.write_text(
        json.dumps(
            [
                {
                    "id": "only-one",
                    "email": "only@example.com",
                    "first_name": "Only",
                    "last_name": "One",
                    "login": "only",
                    "roles": ["manager"],
                }
            ]
        )
    )
    url, process = start_standin("--users", str(users_file))
    try:
        listed = httpx.get(f"{url}{USERS}", params={"page": 1, "size": 10}).json()
        assert [u["id"] for u in listed["items"]] == ["only-one"]
        assert listed["items"][0]["phone"] is None
    finally:
        stop(process)


def test_a_users_file_with_a_repeated_id_is_refused(tmp_path: Path):
    users = json.loads(DEMO_USERS_FILE.read_text())
    users_file = tmp_path / "users.json"
    users_file.write_text(json.dumps([*users, users[0]]))
    with pytest.raises(ValueError, match="appears twice"):
        create_auth_standin(users_file, make_settings())


def test_cli_refuses_production():
    port = free_port()
    result = subprocess.run(
        [sys.executable, "-m", "backend.cli", "auth-standin", "--port", str(port)],
        cwd=ROOT,
        env=standin_env(
            HERALD_ENVIRONMENT="production",
            HERALD_JWT_SECRET="a-real-production-grade-secret-4f9c2e7b1d",
        ),
        capture_output=True,
        timeout=30,
    )
    assert result.returncode != 0
    assert b"never runs with HERALD_ENVIRONMENT=production" in result.stderr


LOGIN = "/api/v1/auth/session/login"
REFRESH = "/api/v1/auth/session/refresh"
LOGOUT = "/api/v1/auth/session/logout"


def test_login_with_password_gives_a_pair_herald_accepts(client):
    response = client.post(LOGIN, json={"login": "mariana.costa", "password": "herald-demo"})
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "bearer" and body["expires_in"] == 900
    principal = TokenVerifier(make_settings()).verify(body["access_token"])
    assert principal.user_id == "demo-manager" and principal.roles == {"manager"}
    for wrong in ({"login": "mariana.costa", "password": "nope"}, {"login": "x", "password": ""}):
        refused = client.post(LOGIN, json=wrong)
        assert refused.status_code == 401
    # Passwords are never served.
    assert all("password" not in u for u in client.get("/api/v1/auth/dev/users").json())


def test_refresh_rotates_the_refresh_token(client):
    first = client.post(LOGIN, json={"login": "admin", "password": "herald-demo"}).json()
    second = client.post(REFRESH, json={"refresh_token": first["refresh_token"]})
    assert second.status_code == 200
    pair = second.json()
    assert pair["refresh_token"] != first["refresh_token"]
    assert TokenVerifier(make_settings()).verify(pair["access_token"]).user_id == "demo-admin"
    # A refresh token is used once.
    again = client.post(REFRESH, json={"refresh_token": first["refresh_token"]})
    assert again.status_code == 401
    assert client.post(REFRESH, json={"refresh_token": "made-up"}).status_code == 401


def test_logout_revokes_the_refresh_token(client):
    pair = client.post(LOGIN, json={"login": "admin", "password": "herald-demo"}).json()
    other = client.post(LOGIN, json={"login": "admin", "password": "herald-demo"}).json()
    assert client.post(LOGOUT, json={"refresh_token": pair["refresh_token"]}).status_code == 204
    refused = client.post(REFRESH, json={"refresh_token": pair["refresh_token"]})
    assert refused.status_code == 401
    # Another session of the same person is not signed out with it.
    assert client.post(REFRESH, json={"refresh_token": other["refresh_token"]}).status_code == 200
    # A spent or unknown token: signed out all the same, no error (as RFC 7009).
    assert client.post(LOGOUT, json={"refresh_token": pair["refresh_token"]}).status_code == 204


def test_access_ttl_is_set_from_the_command_line():
    url, process = start_standin("--access-ttl", "5")
    try:
        body = httpx.post(
            url + LOGIN, json={"login": "admin", "password": "herald-demo"}, timeout=5
        ).json()
        principal = TokenVerifier(make_settings()).verify(body["access_token"])
        assert principal.expires_at is not None
        assert 3 <= principal.expires_at.timestamp() - time.time() <= 5
        # The admin page (another origin) may call it.
        preflight = httpx.options(
            url + REFRESH,
            headers={
                "Origin": "http://127.0.0.1:9",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type",
            },
        )
        assert preflight.headers["access-control-allow-origin"] in ("*", "http://127.0.0.1:9")
    finally:
        stop(process)
