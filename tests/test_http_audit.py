"""The public GraphQL-over-HTTP audit suite (graphql-http) against a live API process."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

AUDIT_DIR = Path(__file__).resolve().parent / "http_audit"


def test_every_must_and_should_passes(live_server):
    out = subprocess.run(
        ["node", "audit.mjs", f"{live_server.url}/graphql"],
        cwd=AUDIT_DIR,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    results = json.loads(out.stdout)
    assert len(results) > 50
    failed = [r for r in results if r["status"] in ("error", "warn")]
    assert failed == []
    musts = [r for r in results if r["name"].startswith("MUST")]
    shoulds = [r for r in results if r["name"].startswith("SHOULD")]
    assert musts and shoulds
