"""HeraldSchema.execute gives what Strawberry's own Schema.execute gives, for every document.

Herald runs graphql-core's executor without Strawberry's per-operation extension machinery
(backend/schema/root.py); these tests run both on the same documents, generated from the
schema with hypothesis-graphql and written by hand for the request errors, and compare the
results as a client would see them (data, masked errors with their codes) and the exceptions
raised. No caller is authenticated, so no resolver reaches a store: each answers with a typed
error, or raises an unexpected error that both must mask.
"""

from __future__ import annotations

from typing import Any

import pytest
import strawberry
from graphql import GraphQLError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_graphql import mutations, nodes, queries
from strawberry.types.graphql import OperationType

from backend.auth import TokenVerifier
from backend.db.session import create_engine, create_sessionmaker
from backend.schema.context import Context, Services
from backend.schema.root import HeraldSchema, build_schema
from tests.conftest import make_settings

SETTINGS = make_settings()
SCHEMA = build_schema(SETTINGS)
ENGINE = create_engine(SETTINGS)
SERVICES = Services(
    settings=SETTINGS,
    verifier=TokenVerifier(SETTINGS),
    sessionmaker=create_sessionmaker(ENGINE),
    engine=ENGINE,
)
SDL = str(SCHEMA)
SCALARS = {
    "DateTime": st.sampled_from(["2030-01-01T00:00:00Z", "not a time", "2020-02-30"]).map(
        nodes.String
    ),
    "JSON": st.sampled_from([nodes.String("x"), nodes.Int(1), nodes.Null]),
}
QUERY_ONLY = (OperationType.QUERY,)


async def _outcome(
    run: Any, query: str, variables: dict[str, Any] | None, operation_name: str | None, allowed: Any
) -> Any:
    context = Context(services=SERVICES, authorization=None)
    try:
        result = await run(
            query,
            variable_values=variables,
            context_value=context,
            operation_name=operation_name,
            allowed_operation_types=allowed,
        )
    except Exception as exc:
        return ("raised", type(exc), str(exc))
    finally:
        await context.close()
    errors = [e.formatted for e in result.errors] if result.errors else None
    return (result.data, errors, result.extensions or None)


async def _both(
    query: str,
    variables: dict[str, Any] | None = None,
    operation_name: str | None = None,
    allowed: Any = None,
) -> tuple[Any, Any]:
    lean = await _outcome(SCHEMA.execute, query, variables, operation_name, allowed)

    async def strawberry_execute(*args: Any, **kwargs: Any) -> Any:
        return await strawberry.Schema.execute(SCHEMA, *args, **kwargs)

    stock = await _outcome(strawberry_execute, query, variables, operation_name, allowed)
    return lean, stock


def test_the_schema_takes_the_lean_path() -> None:
    assert isinstance(SCHEMA, HeraldSchema)
    assert SCHEMA.masking is not None


@pytest.mark.parametrize(
    ("query", "variables", "operation_name", "allowed"),
    [
        ("{ __typename }", None, None, None),
        ("{ viewer { id roles } }", None, None, None),
        ("{ viewer { id ", None, None, None),  # syntax error
        ("{ nope }", None, None, None),  # validation error
        ("query A { __typename } query B { viewer { id } }", None, "B", None),
        ("query A { __typename }", None, "C", None),  # no such operation
        ("mutation { __typename }", None, None, QUERY_ONLY),  # not allowed here
        ("subscription { heartbeat { at } }", None, None, QUERY_ONLY),
        ("", None, None, None),  # no query
        (
            "mutation($i: EventInput!) { sendEvent(input: $i) { __typename } }",
            {"i": {"type": 1}},  # variables that cannot be coerced
            None,
            None,
        ),
        (
            "mutation($i: EventInput!) { a: sendEvent(input: $i) { __typename "
            "... on Error { code message } } b: __typename }",
            {"i": {"type": "user_registered", "userIds": ["u1"]}},
            None,
            None,
        ),
        ("{ " + "a: __typename " * 200 + "}", None, None, None),  # over the alias limit
    ],
)
async def test_written_documents(
    query: str, variables: dict[str, Any] | None, operation_name: str | None, allowed: Any
) -> None:
    lean, stock = await _both(query, variables, operation_name, allowed)
    assert lean == stock


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(document=queries(SDL, custom_scalars=SCALARS) | mutations(SDL, custom_scalars=SCALARS))
async def test_generated_documents(document: str) -> None:
    lean, stock = await _both(document)
    assert lean == stock


async def test_unexpected_errors_are_masked_on_both_paths() -> None:
    # sendEvent reaches the process's clients first: without the app's lifespan they are not
    # open, an unexpected error whose message must not reach the client.
    lean, stock = await _both(
        'mutation { sendEvent(input: {type: "x", userIds: ["u"]}) { __typename } }'
    )
    assert lean == stock
    assert lean[1][0]["message"] == "Unexpected error."
    assert lean[1][0]["extensions"] == {"code": "INTERNAL"}
    assert not isinstance(lean[1][0], GraphQLError)
