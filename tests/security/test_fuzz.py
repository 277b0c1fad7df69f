"""Property-based fuzzing of the GraphQL API from its own schema (hypothesis-graphql).

Every generated document, valid (``Mode.POSITIVE``) or with one schema violation
(``Mode.NEGATIVE``), is posted to the real app (PostgreSQL, Redis, RabbitMQ) with no token, a
bad token, or a valid token of each role. Whatever comes back must be an ordinary answer: no
HTTP 500, no ``INTERNAL`` (masked) error, which would mean an exception the code did not
expect, and no internal text (tracebacks, driver or ORM names) in any message. After the run
the process still answers.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_graphql import Mode, mutations, queries

from backend.auth import mint_token
from backend.frameworks.strawberry_internals import graphql_core_schema
from backend.schema.root import build_schema
from tests.conftest import make_settings
from tests.custom_scalars import CUSTOM_SCALARS
from tests.factories import token_for
from tests.security.conftest import rolled_back

SCHEMA = graphql_core_schema(build_schema(make_settings()))
# Bounded for the suite (four tests, about 20 s in all); raise HERALD_FUZZ_EXAMPLES and set
# HERALD_FUZZ_RANDOM=1 for a longer, differently seeded hunt.
MAX_EXAMPLES = int(os.environ.get("HERALD_FUZZ_EXAMPLES", "150"))
DERANDOMIZE = os.environ.get("HERALD_FUZZ_RANDOM", "") != "1"

# Words that only appear in a message when an internal error leaked through.
LEAK = re.compile(
    r"Traceback|File \"|asyncpg|sqlalchemy|psycopg|redis\.|aio_pika|jinja2|"
    r"KeyError|AttributeError|TypeError|NoneType|object has no attribute|"
    r"is not a valid value for union|Unexpected error",
    re.IGNORECASE,
)

TOKENS = ["none", "garbage", "expired", "admin", "manager", "service", "user"]

COUNTS: Counter[str] = Counter()


def _headers(settings: Any, token: str) -> dict[str, str]:
    headers = {"Accept": "application/graphql-response+json"}
    if token == "garbage":
        headers["Authorization"] = "Bearer not.a.jwt"
    elif token == "expired":
        expired = mint_token(settings, sub="fuzz", roles=["admin"], ttl=timedelta(seconds=-5))
        headers["Authorization"] = f"Bearer {expired}"
    elif token != "none":
        headers["Authorization"] = f"Bearer {token_for(settings, token, sub=f'fuzz-{token}')}"
    return headers


def _problems(response: httpx.Response) -> list[str]:
    """What is wrong with a response, or nothing."""
    problems: list[str] = []
    if response.status_code >= 500:
        problems.append(f"HTTP {response.status_code}")
    if response.status_code not in (200, 400):
        problems.append(f"unexpected status {response.status_code}")
    try:
        body = response.json()
    except ValueError:
        return [*problems, "the body is not JSON"]
    for error in body.get("errors") or []:
        code = (error.get("extensions") or {}).get("code")
        if code == "INTERNAL":
            problems.append(f"masked unexpected error at {error.get('path')}")
        if LEAK.search(error.get("message", "")):
            problems.append(f"internal text: {error['message'][:200]}")
    for typed in _typed_errors(body.get("data")):
        if LEAK.search(typed.get("message") or ""):
            problems.append(f"internal text in a typed error: {typed['message'][:200]}")
    return problems


def _typed_errors(data: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    if isinstance(data, dict):
        if "message" in data and isinstance(data.get("message"), str):
            found.append(data)
        for value in data.values():
            found.extend(_typed_errors(value))
    elif isinstance(data, list):
        for value in data:
            found.extend(_typed_errors(value))
    return found


async def _post(
    client: httpx.AsyncClient, services: Any, engine: Any, document: str, headers: dict[str, str]
) -> None:
    async with rolled_back(services, engine):
        response = await client.post("/graphql", json={"query": document}, headers=headers)
    COUNTS["tried"] += 1
    problems = _problems(response)
    assert not problems, (document, response.status_code, response.text[:2000], problems)
    COUNTS["answered correctly"] += 1
    if response.status_code == 400 or "errors" in response.json():
        COUNTS["refused"] += 1


FUZZ_SETTINGS = settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=DERANDOMIZE,
    print_blob=True,
)


def fuzz_test(documents: Callable[..., st.SearchStrategy[str]], mode: Mode) -> Any:
    """A test posting the documents of one generator (queries or mutations) in one mode,
    each with a token drawn from ``TOKENS``."""

    @FUZZ_SETTINGS
    @given(
        document=documents(SCHEMA, custom_scalars=CUSTOM_SCALARS, mode=mode),
        token=st.sampled_from(TOKENS),
    )
    async def test(fuzz_client, sec_services, engine, sec_settings, document, token):
        await _post(fuzz_client, sec_services, engine, document, _headers(sec_settings, token))

    return test


test_fuzzed_valid_queries = fuzz_test(queries, Mode.POSITIVE)
test_fuzzed_invalid_queries = fuzz_test(queries, Mode.NEGATIVE)
test_fuzzed_valid_mutations = fuzz_test(mutations, Mode.POSITIVE)
test_fuzzed_invalid_mutations = fuzz_test(mutations, Mode.NEGATIVE)


async def test_the_process_still_answers_after_fuzzing(sgql, sec_settings):
    health = await sgql.client.get("/healthz")
    assert health.status_code == 200
    viewer = await sgql("{ viewer { id } }", token=token_for(sec_settings, "user", sub="after"))
    assert viewer["data"]["viewer"]["id"] == "after"
    print(f"\nfuzzing: {dict(COUNTS)}")


NUL_QUERIES = [
    '{ template(slug: "a\\u0000b") { version } unreadCount }',
    '{ templates(search: "a\\u0000") { edges { cursor } } }',
    '{ deliveries(filter: {userId: "a\\u0000"}) { edges { cursor } } }',
    '{ preferences(userId: "a\\u0000") { userId } }',
    '{ campaigns(filter: {search: "a\\u0000"}) { edges { cursor } } }',
]


@pytest.mark.parametrize("query", NUL_QUERIES)
async def test_nul_characters_are_bad_input_not_internal_errors(
    fuzz_client, sec_services, engine, sec_settings, query
):
    # Found by fuzzing: PostgreSQL refuses NUL in text, which surfaced as "Unexpected error."
    # and broke the operation's other fields (they share one read session).
    async with rolled_back(sec_services, engine):
        response = await fuzz_client.post(
            "/graphql", json={"query": query}, headers=_headers(sec_settings, "admin")
        )
    body = response.json()
    assert body["errors"][0]["extensions"]["code"] == "VALIDATION", body
    if "unreadCount" in query:
        assert body["data"]["unreadCount"] == 0
