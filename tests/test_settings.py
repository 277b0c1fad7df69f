"""Settings: development defaults, production refusals."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from backend.config import Settings


def test_development_defaults_need_no_env(monkeypatch):
    for key in list(__import__("os").environ):
        if key.startswith("HERALD_"):
            monkeypatch.delenv(key)
    settings = Settings(_env_file=None)
    assert settings.is_development
    assert settings.history_backend == "postgresql"
    assert settings.graphiql_enabled


def test_production_refuses_placeholder_secret():
    with pytest.raises(ValidationError, match="placeholder"):
        Settings(_env_file=None, environment="production")
    with pytest.raises(ValidationError, match="32 characters"):
        Settings(_env_file=None, environment="production", jwt_secret="short-but-real")
    ok = Settings(_env_file=None, environment="production", jwt_secret="x9" * 20)
    assert not ok.graphiql_enabled


def test_rs256_requires_public_key():
    with pytest.raises(ValidationError, match="PUBLIC_KEY"):
        Settings(_env_file=None, jwt_algorithm="RS256")


def test_mongodb_url_selects_mongo_history():
    assert Settings(_env_file=None, history_url="mongodb://h/db").history_backend == "mongodb"


def test_env_example_lists_every_setting():
    from pathlib import Path

    example = (Path(__file__).resolve().parent.parent / ".env.example").read_text()
    for name in Settings.model_fields:
        assert f"HERALD_{name.upper()}=" in example, name
