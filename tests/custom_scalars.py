"""Hypothesis strategies for the schema's own scalars (JSON, DateTime), as GraphQL literals:
hypothesis-graphql generates the built-in ones only."""

from __future__ import annotations

from datetime import UTC
from typing import Any

import graphql
from hypothesis import strategies as st


def _literal(value: Any) -> graphql.ValueNode:
    """A Python value (from JSON) as a GraphQL literal."""
    if value is None:
        return graphql.NullValueNode()
    if isinstance(value, bool):
        return graphql.BooleanValueNode(value=value)
    if isinstance(value, int):
        return graphql.IntValueNode(value=str(value))
    if isinstance(value, float):
        return graphql.FloatValueNode(value=repr(value))
    if isinstance(value, str):
        return graphql.StringValueNode(value=value)
    if isinstance(value, list):
        return graphql.ListValueNode(values=tuple(_literal(v) for v in value))
    return graphql.ObjectValueNode(
        fields=tuple(
            graphql.ObjectFieldNode(name=graphql.NameNode(value=k), value=_literal(v))
            for k, v in value.items()
        )
    )


_json_leaves = st.none() | st.booleans() | st.integers() | st.text(max_size=20)
_json = st.recursive(
    _json_leaves,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True), children, max_size=4
        )
    ),
    max_leaves=12,
)
_datetimes = st.one_of(
    st.datetimes(timezones=st.just(UTC)).map(lambda d: d.isoformat()),
    st.datetimes().map(lambda d: d.isoformat()),
    st.text(max_size=30),
).map(lambda s: graphql.StringValueNode(value=s))

CUSTOM_SCALARS = {"JSON": _json.map(_literal), "DateTime": _datetimes}
