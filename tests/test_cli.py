"""The herald command line."""

from __future__ import annotations

import httpx
from click.testing import CliRunner

from backend.auth import TokenVerifier
from backend.cli import main
from backend.config import get_settings
from tests.conftest import start_live_server, stop_live_server


def test_commands_exist():
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    for command in ["api", "worker", "beat", "migrate", "dev", "token"]:
        assert f"  {command}" in result.output


def test_token_prints_a_verifiable_jwt():
    result = CliRunner().invoke(
        main, ["token", "--sub", "svc-1", "--role", "service", "--role", "admin", "--ttl", "60"]
    )
    assert result.exit_code == 0, result.output
    principal = TokenVerifier(get_settings()).verify(result.output.strip())
    assert principal.user_id == "svc-1"
    assert principal.roles == {"service", "admin"}


def test_token_refuses_unknown_role():
    result = CliRunner().invoke(main, ["token", "--sub", "x", "--role", "root"])
    assert result.exit_code != 0


def test_api_logs_requests_only_when_asked(tmp_path):
    """`herald dev` runs the API with --access-log, so the development log shows requests;
    plain `herald api` (production, benchmarks) logs none."""
    lines = {}
    for flag in ("--access-log", "--no-access-log"):
        log = tmp_path / f"{flag}.log"
        with log.open("w") as sink:
            server = start_live_server({"HERALD_LOG_LEVEL": "INFO"}, log=sink, args=[flag])
            try:
                assert httpx.get(f"{server.url}/healthz?from=the-cli-test").status_code == 200
            finally:
                stop_live_server(server)
        lines[flag] = [line for line in log.read_text().splitlines() if "the-cli-test" in line]
    assert len(lines["--access-log"]) == 1 and " 200" in lines["--access-log"][0]
    assert lines["--no-access-log"] == []


def test_uvicorn_s_connection_lines_follow_the_log_level(tmp_path):
    """uvicorn logs each WebSocket opened and closed at INFO: at WARNING there are none."""
    from websockets.sync.client import connect

    lines = {}
    for level in ("INFO", "WARNING"):
        log = tmp_path / f"{level}.log"
        with log.open("w") as sink:
            server = start_live_server({"HERALD_LOG_LEVEL": level}, log=sink)
            try:
                with connect(server.ws_url, subprotocols=["graphql-transport-ws"]) as socket:
                    socket.send('{"type": "ping"}')
                    assert "pong" in str(socket.recv(timeout=10))
            finally:
                stop_live_server(server)
        lines[level] = [line for line in log.read_text().splitlines() if "connection" in line]
    assert any("connection open" in line for line in lines["INFO"]), lines["INFO"]
    assert lines["WARNING"] == []
