"""The herald command line."""

from __future__ import annotations

from click.testing import CliRunner

from backend.auth import TokenVerifier
from backend.cli import main
from backend.config import get_settings


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
