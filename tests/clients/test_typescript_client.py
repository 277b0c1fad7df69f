"""The TypeScript client (clients/typescript): its generated operations are current with
schema.graphql (GraphQL Code Generator's --check), it compiles under `tsc --strict`, and its
Node tests (clients/typescript/test/) pass against a live ``herald api``."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.clients.conftest import service_token
from tests.conftest import LiveServer

CLIENT = Path(__file__).resolve().parents[2] / "clients" / "typescript"


def run(*command: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command,
        cwd=CLIENT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_the_generated_operations_are_current_with_the_schema() -> None:
    done = run("npm", "run", "--silent", "check-generated")
    assert done.returncode == 0, f"stale: run `make clients`\n{done.stdout}{done.stderr}"


def test_the_client_builds_and_passes_its_tests_against_a_live_api(api: LiveServer) -> None:
    built = run("npm", "run", "--silent", "build")
    assert built.returncode == 0, built.stdout + built.stderr
    tested = run(
        "node", "--test", "test/", env={"HERALD_URL": api.url, "HERALD_TOKEN": service_token()}
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "# pass 4" in tested.stdout and "# fail 0" in tested.stdout, tested.stdout
