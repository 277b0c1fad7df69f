"""Deployment test helpers: the repository's nginx config rendered for a local nginx, real
subprocesses, and a recorder for OTLP exports."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from tests.conftest import ROOT, free_port
from tests.http_stubs import QuietHandler, serve
from tests.processes import wait_for_port

NGINX_DIR = ROOT / "nginx"
TEMPLATE_VARIABLE = re.compile(r"\$\{(NGINX_[A-Z_]+)\}")


def require_binary(name: str) -> str:
    """The path of a tool the setup script installs; fails (not skips) when it is missing."""
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin")
    if path is None:
        pytest.fail(f"{name} is not installed: run `scripts/setup.sh test`")
    return path


def render_template(text: str, values: dict[str, str]) -> str:
    """What the nginx image's envsubst step does with our template: ${NGINX_*} only."""
    missing = set(TEMPLATE_VARIABLE.findall(text)) - set(values)
    assert not missing, f"no value for {missing}"
    return TEMPLATE_VARIABLE.sub(lambda m: values[m.group(1)], text)


@dataclass
class Nginx:
    url: str
    port: int
    prefix: Path
    admin_root: Path
    process: subprocess.Popen[bytes]

    def access_log(self) -> list[dict[str, object]]:
        """The JSON access log lines written so far."""
        text = (self.prefix / "access.log").read_text()
        return [json.loads(line) for line in text.splitlines() if line.strip()]


def start_nginx(
    upstream: str, admin_source: Path, *, port: int | None = None, max_body: str = "1m"
) -> Nginx:
    """Lay out a prefix directory like the nginx image's /etc/nginx: our nginx.conf as is,
    Debian's mime.types, and the template rendered into conf.d/herald.conf."""
    nginx = require_binary("nginx")
    # Workers run as `nobody`, so the prefix and the admin files must be world-readable.
    prefix = Path(tempfile.mkdtemp(prefix="herald-nginx-"))
    prefix.chmod(0o755)
    admin_root = prefix / "admin"
    shutil.copytree(admin_source, admin_root)
    for path in [admin_root, *admin_root.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    (prefix / "conf.d").mkdir(mode=0o755)
    shutil.copy(NGINX_DIR / "nginx.conf", prefix / "nginx.conf")
    shutil.copy("/etc/nginx/mime.types", prefix / "mime.types")
    port = port or free_port()
    rendered = render_template(
        (NGINX_DIR / "templates" / "herald.conf.template").read_text(),
        {
            "NGINX_LISTEN": f"127.0.0.1:{port}",
            "NGINX_API_UPSTREAM": upstream,
            "NGINX_ADMIN_ROOT": str(admin_root),
            "NGINX_CLIENT_MAX_BODY_SIZE": max_body,
        },
    )
    (prefix / "conf.d" / "herald.conf").write_text(rendered)
    args = [
        nginx,
        "-p",
        f"{prefix}/",
        "-c",
        str(prefix / "nginx.conf"),
        "-e",
        "stderr",
        "-g",
        f"daemon off; pid {prefix}/nginx.pid;",
    ]
    check = subprocess.run([*args, "-t"], capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stderr
    # The access log goes to stdout (as in the container): keep it for the tests to read.
    with (prefix / "access.log").open("wb") as access_log:
        process = subprocess.Popen(args, stdout=access_log, stderr=subprocess.PIPE)
    wait_for_port(port, process)
    return Nginx(f"http://127.0.0.1:{port}", port, prefix, admin_root, process)


def stop_process(process: subprocess.Popen[bytes], seconds: float = 10) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(seconds)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass
class Recorder:
    """Requests a small HTTP server received: (path, headers, body)."""

    requests: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)
    arrived: threading.Condition = field(default_factory=threading.Condition)

    def wait(self, predicate, seconds: float = 10.0):
        deadline = time.monotonic() + seconds
        with self.arrived:
            while True:
                found = predicate(self.requests)
                if found:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    return found
                self.arrived.wait(left)


@contextmanager
def http_server(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """A real HTTP server on a free port, answering with ``handler`` in a thread; its URL."""
    server, url = serve(handler)
    try:
        yield url
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def http_recorder() -> Iterator[tuple[str, Recorder]]:
    """A real HTTP server on a free port that answers 200 to every POST and records it."""
    recorder = Recorder()

    class Handler(QuietHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with recorder.arrived:
                recorder.requests.append((self.path, dict(self.headers), body))
                recorder.arrived.notify_all()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

    with http_server(Handler) as url:
        yield url, recorder


def run_python(*args: str, timeout: float = 60, **env: str) -> subprocess.CompletedProcess[str]:
    """``python *args`` from the project's root with a herald subprocess's environment
    (``env`` added to it); its output captured as text."""
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env=herald_env(**env),
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
    )


def herald_env(**overrides: str) -> dict[str, str]:
    """The environment of a herald subprocess in these tests."""
    from tests.conftest import TEST_DATABASE_URL

    env = {
        **os.environ,
        "HERALD_ENVIRONMENT": "test",
        "HERALD_DATABASE_URL": TEST_DATABASE_URL,
        "HERALD_JWT_SECRET": "test-secret-for-the-suite-0123456789abcdef",
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env.update(overrides)
    return env
