"""The committed schema.graphql is the schema the code serves."""

from __future__ import annotations

from pathlib import Path

from backend.schema.root import build_schema

SCHEMA_FILE = Path(__file__).resolve().parent.parent / "schema.graphql"


def test_committed_schema_matches_code():
    committed = SCHEMA_FILE.read_text()
    current = build_schema().as_str() + "\n"
    assert committed == current, "schema.graphql is stale: run `make schema` and commit it"
