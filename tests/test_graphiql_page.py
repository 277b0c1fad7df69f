"""The GraphiQL page's HTML: its settings block, the demo token outside production, the
Content-Security-Policy, and what it says when GraphiQL was never built."""

from __future__ import annotations

import json
import re
from pathlib import Path

from backend.auth import TokenVerifier
from backend.graphql_http import GRAPHIQL_BUILD, GraphiQLPage
from tests.conftest import make_settings

CONFIG = re.compile(r'<script id="herald-graphiql-config" type="application/json">(.*?)</script>')


def config_of(page: GraphiQLPage) -> dict:
    response = page.render()
    assert response.status_code == 200
    found = CONFIG.search(bytes(response.body).decode())
    assert found is not None
    return json.loads(found.group(1))


def test_the_page_offers_a_demo_manager_token_outside_production():
    settings = make_settings()
    config = config_of(GraphiQLPage(settings))
    assert config["endpoint"] == "/graphql"
    headers = json.loads(config["headers"])
    principal = TokenVerifier(settings).verify_header(headers["Authorization"])
    assert principal.user_id == "demo-manager" and "manager" in principal.roles


def test_production_gets_no_token():
    settings = make_settings(environment="production", graphiql=True)
    assert config_of(GraphiQLPage(settings))["headers"] is None


def test_the_page_is_built_and_carries_the_policy():
    assert (GRAPHIQL_BUILD / "index.html").is_file(), "run scripts/setup.sh to build GraphiQL"
    response = GraphiQLPage(make_settings()).render()
    policy = response.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "script-src 'self';" in policy
    assert response.headers["cache-control"] == "no-store"


def test_an_unbuilt_graphiql_says_how_to_build_it(tmp_path: Path):
    response = GraphiQLPage(make_settings(), build=tmp_path).render()
    assert response.status_code == 503
    assert b"scripts/setup.sh" in bytes(response.body)
