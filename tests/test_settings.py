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


def test_bounce_tags_have_their_own_key_and_need_one_with_rs256_in_production():
    hs256 = Settings(_env_file=None, jwt_secret="x9" * 20)
    # Derived from the JWT secret, apart from the other keys derived from it.
    assert hs256.bounce_key not in (hs256.tracking_key, hs256.unsubscribe_key, b"x9" * 20)
    assert Settings(_env_file=None, bounce_secret="b" * 40).bounce_key == b"b" * 40
    rs256 = {
        "_env_file": None,
        "environment": "production",
        "jwt_algorithm": "RS256",
        "jwt_secret": None,
        "jwt_public_key": "-----BEGIN PUBLIC KEY-----",
        "unsubscribe_secret": "u" * 40,
        "forget_hash_key": "f" * 40,
        "email_bounce_domain": "bounces.example.com",
    }
    with pytest.raises(ValidationError, match="HERALD_BOUNCE_SECRET is required"):
        Settings(**rs256)
    assert Settings(**rs256, bounce_secret="b" * 40).bounce_key == b"b" * 40
    with pytest.raises(ValidationError, match="placeholder"):
        Settings(**rs256, bounce_secret="change-me-" + "b" * 30)


def test_rs256_requires_public_key():
    with pytest.raises(ValidationError, match="PUBLIC_KEY"):
        Settings(_env_file=None, jwt_algorithm="RS256")


def test_single_sign_on_settings_are_checked():
    oidc = {
        "oidc_issuer": "https://id.example.com",
        "oidc_client_id": "herald-admin",
        "oidc_audience": "https://herald.example.com/graphql",
    }
    ok = Settings(_env_file=None, **oidc, oidc_role_map={"herald-admins": "admin"})
    assert ok.oidc_role_map == {"herald-admins": "admin"}
    with pytest.raises(ValidationError, match="HERALD_OIDC_CLIENT_ID is required"):
        Settings(_env_file=None, **{**oidc, "oidc_client_id": None})
    with pytest.raises(ValidationError, match="HERALD_OIDC_AUDIENCE is required"):
        Settings(_env_file=None, **{**oidc, "oidc_audience": None})
    # An ID token's audience is the client id: it must never pass as an access token.
    with pytest.raises(ValidationError, match="must differ from HERALD_OIDC_CLIENT_ID"):
        Settings(_env_file=None, **{**oidc, "oidc_audience": "herald-admin"})
    with pytest.raises(ValidationError, match="asymmetric"):
        Settings(_env_file=None, **oidc, oidc_algorithm="HS256")
    with pytest.raises(ValidationError, match="include 'openid'"):
        Settings(_env_file=None, **oidc, oidc_scopes="profile email")
    with pytest.raises(ValidationError, match="admin, manager or user only, not: service"):
        Settings(_env_file=None, **oidc, oidc_role_map={"robots": "service"})
    with pytest.raises(ValidationError, match="https URL in production"):
        Settings(
            _env_file=None,
            **{**oidc, "oidc_issuer": "http://id.example.com"},
            environment="production",
            jwt_secret="x9" * 20,
        )


def test_the_paste_box_and_the_stand_in_are_for_development_only():
    from backend.admin_page import page_config

    development = page_config(Settings(_env_file=None, environment="development"))
    assert development["tokenPaste"] is True
    assert development["authStandinUrl"] == "http://127.0.0.1:8001"
    assert development["oidc"] is None
    production = page_config(
        Settings(
            _env_file=None,
            environment="production",
            jwt_secret="x9" * 20,
            admin_auth_service_form=False,
            oidc_issuer="https://id.example.com",
            oidc_client_id="herald-admin",
            oidc_audience="https://herald.example.com/graphql",
            oidc_label="Example ID",
        )
    )
    assert production["tokenPaste"] is False
    assert production["authStandinUrl"] is None
    assert production["authService"] is None
    assert production["oidc"] == {
        "issuer": "https://id.example.com",
        "clientId": "herald-admin",
        "scopes": "openid profile",
        "label": "Example ID",
    }


def test_mongodb_url_selects_mongo_history():
    assert Settings(_env_file=None, history_url="mongodb://h/db").history_backend == "mongodb"


def test_env_example_lists_every_setting():
    from pathlib import Path

    example = (Path(__file__).resolve().parent.parent / ".env.example").read_text()
    for name in Settings.model_fields:
        assert f"HERALD_{name.upper()}=" in example, name


def test_the_bounce_local_part_keeps_verp_addresses_within_64_characters():
    from backend.channels.email import SmtpEmailSender

    longest = Settings(
        _env_file=None, email_bounce_domain="bounce.example.com", email_bounce_local_part="b" * 16
    )
    address = SmtpEmailSender(longest).envelope_sender("0b5b8a0e-7b4f-5d5e-9a51-3c8f0b6f2d11")
    assert len(address.partition("@")[0]) == 64
    with pytest.raises(ValidationError, match="email_bounce_local_part"):
        Settings(_env_file=None, email_bounce_local_part="b" * 17)
