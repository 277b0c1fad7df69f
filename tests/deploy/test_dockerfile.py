"""The Dockerfile. No Docker engine runs here, so the build stage's own instructions (its ENV,
COPY and `uv` RUN lines) are replayed into a temporary directory, and what the runtime stage
would carry is checked: a working `herald`, the files it needs, no development tools."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys

import pytest

from tests.conftest import ROOT

DOCKERFILE = ROOT / "Dockerfile"


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuations joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", text)
    result = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            result.append((keyword.upper(), rest.strip()))
    return result


def stages(text: str) -> dict[str, list[tuple[str, str]]]:
    named: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    for keyword, rest in instructions(text):
        if keyword == "FROM":
            current = named.setdefault(rest.split(" AS ")[-1], [])
        elif current is not None:
            current.append((keyword, rest))
    return named


def env_pairs(rest: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in shlex.split(rest))


def test_image_shape():
    text = DOCKERFILE.read_text()
    assert re.search(r"(?m)^ARG PYTHON_IMAGE=python:3\.11-slim", text)
    named = stages(text)
    assert set(named) == {
        "graphiql",
        "inbox",
        "build",
        "admin-vendor-build",
        "admin-vendor",
        "runtime",
    }
    runtime = named["runtime"]
    users = [rest for keyword, rest in runtime if keyword == "USER"]
    assert users and users[-1].split(":")[0] not in {"root", "0"}
    assert ("ENTRYPOINT", '["herald"]') in runtime
    copies = [rest for keyword, rest in runtime if keyword == "COPY"]
    assert copies == ["--from=build /app/.venv /app/.venv"]
    build_env = {
        k: v for kw, rest in named["build"] if kw == "ENV" for k, v in env_pairs(rest).items()
    }
    assert build_env["UV_COMPILE_BYTECODE"] == "1"
    # uv is pinned to the version scripts/setup.sh uses.
    setup = (ROOT / "scripts" / "setup.sh").read_text()
    pinned = re.search(r'UV_VERSION="([^"]+)"', setup)
    assert pinned and f"ARG UV_VERSION={pinned.group(1)}" in text
    # The build context is an allowlist: no .env, .venv or .git can reach a layer.
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    assert "*" in ignore
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    assert allowed == {
        "pyproject.toml",
        "uv.lock",
        "README.md",
        "backend",
        "graphiql",
        "admin_vendor/package.json",
        "admin_vendor/package-lock.json",
        "admin_vendor/oidc.js",
        "clients/inbox/package.json",
        "clients/inbox/package-lock.json",
        "clients/inbox/build.mjs",
        "clients/inbox/tsconfig.json",
        "clients/inbox/src",
    }
    assert {"graphiql/node_modules", "backend/graphiql_assets", "backend/sdk_assets"} <= set(ignore)


@pytest.mark.parametrize(
    ("stage", "folder", "assets"),
    [("graphiql", "graphiql", "graphiql_assets"), ("inbox", "clients/inbox", "sdk_assets")],
)
def test_a_javascript_stage_builds_from_the_lock(stage, folder, assets):
    """GraphiQL and <herald-inbox> are each built with `npm ci` from the committed lock and
    land in the package."""
    named = stages(DOCKERFILE.read_text())
    runs = [rest for keyword, rest in named[stage] if keyword == "RUN"]
    assert any("npm ci" in run for run in runs) and runs[-1] == "npm run build"
    copies = [rest for keyword, rest in named[stage] if keyword == "COPY"]
    assert copies[0] == f"{folder}/package.json {folder}/package-lock.json ./"
    assert (ROOT / folder / "package-lock.json").is_file()
    build_copies = [rest for keyword, rest in named["build"] if keyword == "COPY"]
    assert f"--from={stage} /src/backend/{assets} ./backend/{assets}" in build_copies


def test_build_stage_installs_a_working_herald(tmp_path):
    """Replay the build stage with the checkout's uv, then use the environment it made."""
    uv = ROOT / ".tools" / "bin" / "uv"
    if not uv.exists():
        pytest.fail("uv is not installed in .tools/: run `scripts/setup.sh`")
    workdir = tmp_path / "src"
    venv = tmp_path / "venv"
    # The machine's environment (proxy, certificates), without any uv or venv overrides.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("UV_", "VIRTUAL_ENV"))}
    env["PATH"] = f"{uv.parent}:{os.environ['PATH']}"
    for keyword, rest in stages(DOCKERFILE.read_text())["build"]:
        if keyword == "ENV":
            env.update(env_pairs(rest))
            # Paths of the image, mapped to this machine.
            env["UV_PROJECT_ENVIRONMENT"] = str(venv)
            # The interpreter running the tests: the one scripts/setup.sh chose on this machine
            # (a machine with Python 3.13 alone has no python3.11).
            env["UV_PYTHON"] = sys.executable
            # Speed only: hard links instead of copies, and no compiling of ~4,000 files
            # (test_image_shape checks the image compiles them).
            env["UV_LINK_MODE"] = "hardlink"
            env["UV_COMPILE_BYTECODE"] = "0"
        elif keyword == "WORKDIR":
            workdir.mkdir(parents=True, exist_ok=True)
        elif keyword == "COPY" and rest.startswith("--from=graphiql "):
            # The graphiql stage's output: this checkout's build (scripts/setup.sh made it).
            shutil.copytree(
                ROOT / "backend" / "graphiql_assets", workdir / "backend" / "graphiql_assets"
            )
        elif keyword == "COPY" and rest.startswith("--from=inbox "):
            # The inbox stage's output, likewise.
            shutil.copytree(ROOT / "backend" / "sdk_assets", workdir / "backend" / "sdk_assets")
        elif keyword == "COPY":
            *sources, _ = shlex.split(rest)
            for source in sources:
                path = ROOT / source
                target = workdir / source
                if path.is_dir():
                    # As .dockerignore: GraphiQL's build comes from the graphiql stage.
                    ignore = shutil.ignore_patterns("__pycache__", "graphiql_assets", "sdk_assets")
                    shutil.copytree(path, target, ignore=ignore)
                else:
                    shutil.copy(path, target)
        elif keyword == "RUN":
            command = re.sub(r"--mount=\S+\s*", "", rest)
            if command.startswith("pip install"):
                assert '"uv==${UV_VERSION}"' in command
                continue  # the checkout's pinned uv stands in for it
            assert command.startswith("uv sync"), command
            done = subprocess.run(
                command,
                shell=True,
                cwd=workdir,
                env=env,
                capture_output=True,
                text=True,
                check=False,
                timeout=300,
            )
            assert done.returncode == 0, done.stderr
    herald = venv / "bin" / "herald"
    # What the runtime stage copies is the environment alone: it must work without /src.
    shutil.rmtree(workdir)
    done = subprocess.run(
        [str(herald), "--help"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        env={"PATH": os.environ["PATH"]},
    )
    assert done.returncode == 0, done.stderr
    for command in ("api", "worker", "beat", "migrate", "auth-standin"):
        assert f"  {command}" in done.stdout, command
    site = next((venv / "lib").glob("python3.*/site-packages"))
    package = site / "backend"
    for needed in (
        "db/migrations/env.py",
        "db/migrations/script.py.mako",
        "standins/demo_users.json",
        "observability/probe.py",
        "graphiql_assets/index.html",
        "sdk_assets/herald-inbox.js",
    ):
        assert (package / needed).is_file(), needed
    assert any((package / "db/migrations/versions").glob("0001_*.py"))
    # Development tools stay out of the image.
    for tool in ("pytest", "ruff", "mypy", "playwright"):
        assert not (site / tool).exists(), tool
