"""docker-compose.yml, validated by Debian's docker-compose (no engine needed for `config`)
and checked against the real CLI."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT
from tests.deploy.conftest import TEMPLATE_VARIABLE, require_binary

HERALD_SERVICES = {"api", "worker", "beat", "migrate", "auth-standin"}
STORES = {"postgres", "rabbitmq", "redis", "mongo", "mailpit"}
EXPECTED = {"nginx", "api", "worker", "beat", "migrate", *STORES}
SECRET_NAME = re.compile(r"PASSWORD|PASS$|SECRET|TOKEN|PRIVATE_KEY|_AUTH$", re.IGNORECASE)
INTERPOLATION_ONLY = re.compile(r"^\$\{[A-Z_]+(:?\?[^}]*)?\}$")


def compose_config(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    binary = require_binary("docker-compose")
    # Only PATH: a variable in the caller's environment would override .env.
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(project)}
    return subprocess.run(
        [binary, *args, "config"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def project_with(tmp_path: Path, env_text: str) -> Path:
    shutil.copy(ROOT / "docker-compose.yml", tmp_path / "docker-compose.yml")
    (tmp_path / ".env").write_text(env_text)
    return tmp_path


@pytest.fixture(scope="module")
def example_env() -> str:
    return (ROOT / ".env.example").read_text()


@pytest.fixture(scope="module")
def configs(tmp_path_factory, example_env) -> dict[str, dict]:
    """The resolved configuration without and with the dev profile, from .env.example."""
    project = project_with(tmp_path_factory.mktemp("compose"), example_env)
    result = {}
    for name, args in {"default": (), "dev": ("--profile", "dev")}.items():
        done = compose_config(project, *args)
        assert done.returncode == 0, done.stderr
        result[name] = yaml.safe_load(done.stdout)
    return result


def test_services_and_the_dev_profile(configs):
    # `config` lists every service with its profiles; compose starts a service that has
    # profiles only when one of them is active.
    services = configs["default"]["services"]
    always = {name for name, service in services.items() if not service.get("profiles")}
    assert always == EXPECTED
    assert set(services) - always == {"auth-standin"}
    assert services["auth-standin"]["profiles"] == ["dev"]
    assert set(configs["dev"]["services"]) == EXPECTED | {"auth-standin"}


def test_every_long_running_service_has_a_healthcheck(configs):
    services = configs["dev"]["services"]
    for name, service in services.items():
        if name == "migrate":
            continue
        check = service.get("healthcheck")
        assert check and check.get("test") and not check.get("disable"), name
    # The one-shot migration is gated on its exit code instead.
    assert services["migrate"]["restart"] == "no"


def test_dependencies_wait_for_health_and_for_the_migration(configs):
    services = configs["default"]["services"]
    for name, service in services.items():
        for dependency, condition in (service.get("depends_on") or {}).items():
            assert condition["condition"] in {
                "service_healthy",
                "service_completed_successfully",
            }, (name, dependency)
            if dependency == "migrate":
                assert condition["condition"] == "service_completed_successfully"
    for name in ("api", "worker", "beat"):
        depends = services[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully", name
        assert {"postgres", "rabbitmq", "redis", "mongo"} <= set(depends), name
    assert services["nginx"]["depends_on"]["api"]["condition"] == "service_healthy"


def test_herald_commands_are_real_cli_commands(configs):
    """Each herald container's command, parsed by the real CLI (options included)."""
    herald = Path(sys.executable).with_name("herald")
    services = configs["dev"]["services"]
    herald_services = {n for n, s in services.items() if s["image"].startswith("herald:")}
    assert herald_services == HERALD_SERVICES
    runs = {
        name: subprocess.Popen(
            [str(herald), *services[name]["command"], "--help"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in herald_services
    }
    for name, run in runs.items():
        stdout, stderr = run.communicate(timeout=60)
        assert run.returncode == 0, (name, services[name]["command"], stderr)
        assert stdout.startswith("Usage: herald " + services[name]["command"][0]), name


def test_healthchecks_of_herald_services_use_real_probes(configs):
    from backend.observability import probe

    services = configs["dev"]["services"]
    for name in HERALD_SERVICES - {"migrate"}:
        test = services[name]["healthcheck"]["test"]
        assert test[:4] == ["CMD", "python", "-m", "backend.observability.probe"], name
        assert test[4] in {"url", "worker", "beat"}, name
    assert services["api"]["healthcheck"]["test"][-1].endswith(":8000/healthz")
    assert probe.redbeat_lock_key() == "herald:redbeat:lock"


def test_api_scales(configs):
    api = configs["default"]["services"]["api"]
    assert "container_name" not in api and "ports" not in api
    assert int(api["deploy"]["replicas"]) >= 2
    # Only nginx publishes a port to every interface; the tools bind to loopback.
    for name, service in configs["dev"]["services"].items():
        for port in service.get("ports", []):
            published = port if isinstance(port, str) else f"{port.get('host_ip', '')}:{port}"
            assert name == "nginx" or published.startswith("127.0.0.1:"), (name, port)


def test_stores_keep_data_in_named_volumes(configs):
    config = configs["default"]
    for name in STORES:
        mounts = config["services"][name]["volumes"]
        sources = [m["source"] if isinstance(m, dict) else m.split(":")[0] for m in mounts]
        assert any(source in config["volumes"] for source in sources), name


def test_configured_from_env_without_secrets_in_the_file(tmp_path, example_env):
    text = (ROOT / "docker-compose.yml").read_text()
    raw = yaml.safe_load(text)
    # No value of a secret-named variable is written in the file: only ${...} references.
    for name, service in raw["services"].items():
        environment = service.get("environment") or {}
        for key, value in environment.items():
            if SECRET_NAME.search(key):
                assert INTERPOLATION_ONLY.match(str(value)), (name, key, value)
    for line in example_env.splitlines():
        key, _, value = line.partition("=")
        if SECRET_NAME.search(key) and value:
            assert value not in text, key
    # Every herald service reads the whole .env; stores get their own variables only.
    for name in HERALD_SERVICES:
        assert raw["services"][name]["env_file"] == ".env", name

    # Different secrets in .env come out in the services' connection URLs.
    changed = re.sub(r"(?m)^(POSTGRES_PASSWORD|REDIS_PASSWORD)=.*$", r"\1=from-env-\1", example_env)
    done = compose_config(project_with(tmp_path, changed))
    assert done.returncode == 0, done.stderr
    config = yaml.safe_load(done.stdout)
    api_env = config["services"]["api"]["environment"]
    assert ":from-env-POSTGRES_PASSWORD@postgres:5432/" in api_env["HERALD_DATABASE_URL"]
    assert api_env["HERALD_REDIS_URL"] == "redis://:from-env-REDIS_PASSWORD@redis:6379/0"
    assert api_env["HERALD_HISTORY_URL"].startswith("mongodb://")
    assert "@mongo:27017/" in api_env["HERALD_HISTORY_URL"]
    postgres_env = config["services"]["postgres"]["environment"]
    assert postgres_env["POSTGRES_PASSWORD"] == "from-env-POSTGRES_PASSWORD"
    assert not any(k.startswith("HERALD_") for k in postgres_env)


def test_a_missing_password_stops_compose(tmp_path, example_env):
    without = re.sub(r"(?m)^POSTGRES_PASSWORD=.*\n", "", example_env)
    done = compose_config(project_with(tmp_path, without))
    assert done.returncode != 0
    assert "POSTGRES_PASSWORD" in done.stderr


def test_nginx_service_gets_every_template_variable(configs):
    nginx = configs["default"]["services"]["nginx"]
    template = (ROOT / "nginx" / "templates" / "herald.conf.template").read_text()
    assert set(TEMPLATE_VARIABLE.findall(template)) <= set(nginx["environment"])
    assert nginx["environment"]["NGINX_API_UPSTREAM"] == "api:8000"
    targets = {}
    for mount in nginx["volumes"]:
        source, target = (
            (mount["source"], mount["target"]) if isinstance(mount, dict) else mount.split(":")[:2]
        )
        targets[target] = Path(source)
    assert targets["/etc/nginx/nginx.conf"].name == "nginx.conf"
    assert targets["/etc/nginx/templates"].name == "templates"
    assert targets[nginx["environment"]["NGINX_ADMIN_ROOT"]].name == "admin_frontend"
    for relative in ("nginx/nginx.conf", "nginx/templates", "admin_frontend"):
        assert (ROOT / relative).exists(), relative
