"""The WebSocket fast path for ``notifications`` against graphql-core's own executor.

backend/live_socket.py answers a ``notifications`` subscription without graphql-core's
executor: a compiled plan projects each item into its ``next`` payload. Here every subscription
document hypothesis-graphql generates over the whole Subscription type, rewritten to add what
clients write (aliases, ``__typename``, inline fragments, named fragments, ``@skip``/``@include``
with literals and variables, arguments as variables, a second operation picked by name), is
given, when graphql-core's ``validate`` accepts it, to both:

* the fast path: ``compile_notifications``, then ``NotificationsPlan.since`` and ``.result``
  (exactly what ``LiveSocketHandler.run_operation`` and ``_stream`` call);
* graphql-core's ``subscribe`` on the same schema, whose ``notifications`` resolver (Herald's,
  unchanged) reads a stream yielding the same item: graphql-core executes the operation with the
  item as the root value (``map_source_to_response_event``), as it does for every event.

For each live message that reaches a subscription (a new notification, with nulls where the
schema allows them, and read or archived changes), both must give the same payload, key order
included, and open the stream from the same ``since``. A document the fast path does not answer
must be declined (no plan, or ``Unsupported``), which makes ``run_operation`` hand it to
Strawberry, that is to graphql-core. Resync and overflow markers never reach a projection: the
inbox stream both roads share consumes them (a replay, or the socket closed).

Queries and mutations with one root field read for leaves (``sendEvent``) bypass the executor
too: ``HeraldSchema.execute`` answers them from compiled plans (backend/schema/plans.py). Two
tests hold them to the same bar:

* the queries hypothesis-graphql generates over the whole Query type, rewritten the same way,
  are posted to ``/graphql`` with a token of each role and compared with graphql-core's
  ``graphql()`` given the same context and database state (one rolled-back transaction per
  example), its errors masked and coded as Herald gives them: the same data, key order
  included, and the same errors;
* the queries and mutations it generates over the whole schema, one root field each, run on
  both roads with that field's resolver giving the same drawn outcome (an object of any type
  the field may give, nulls and misfit values included, or an error): a write executed twice
  does not give one result (new ids, times, messages queued), so the resolver's result is what
  both roads share. The resolver must be called as often, with the same arguments, on both.

Run it alone with ``.venv/bin/pytest tests/test_differential.py``;
``HERALD_DIFFERENTIAL_EXAMPLES`` and ``HERALD_DIFFERENTIAL_QUERIES`` raise the number of
documents and ``HERALD_DIFFERENTIAL_RANDOM=1`` seeds them differently.
"""

from __future__ import annotations

import asyncio
import inspect
import os
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from random import Random
from typing import Any
from unittest import mock

import graphql
import httpx
import orjson
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis_graphql import mutations, queries

from backend.errors import NotFoundError as HeraldNotFound
from backend.errors import ValidationError as HeraldValidation
from backend.frameworks.strawberry_internals import graphql_core_schema
from backend.live_socket import compile_notifications
from backend.resolvers import inbox as inbox_resolvers
from backend.schema.context import Context, Services
from backend.schema.errors import HeraldMaskErrors
from backend.schema.plans import Unsupported, compile_operation
from backend.schema.root import build_schema
from backend.services.inbox import InboxEntry
from backend.services.live import NewNotification, ReadChange, decode, encode
from tests.conftest import make_settings
from tests.custom_scalars import CUSTOM_SCALARS
from tests.factories import token_for
from tests.security.conftest import rolled_back

HERALD_SCHEMA = build_schema(make_settings())
SCHEMA = graphql_core_schema(HERALD_SCHEMA)
SUBSCRIPTION = SCHEMA.subscription_type
assert SUBSCRIPTION is not None
# hypothesis-graphql generates queries and mutations only: its query strategy, over a schema
# whose query root is the Subscription type, gives selections of the subscription fields.
SUBSCRIPTION_ROOTS = graphql.GraphQLSchema(query=SUBSCRIPTION, types=list(SCHEMA.type_map.values()))

MAX_EXAMPLES = int(os.environ.get("HERALD_DIFFERENTIAL_EXAMPLES", "300"))
DERANDOMIZE = os.environ.get("HERALD_DIFFERENTIAL_RANDOM", "") != "1"
# The settings of both comparisons without a database (the fast path's, the plans').
EXAMPLES = settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=DERANDOMIZE,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    database=None,
    print_blob=True,
)

# Aliases that collide with field names on purpose: same-field merges, and conflicts that
# validation refuses.
ALIASES = ("kind", "id", "title", "read", "ids", "notifications")


@dataclass
class Rewrite:
    """One document's rewrite: the variables and fragments it has gathered."""

    draw: st.DrawFn
    # For the odds of each rewrite, seeded by Hypothesis: its own draws favour boundary values
    # (a float near 0, the smallest integer), which would take nearly every rewrite at once.
    random: Random
    variable_definitions: list[graphql.VariableDefinitionNode] = field(default_factory=list)
    variables: dict[str, Any] = field(default_factory=dict)
    fragments: list[graphql.FragmentDefinitionNode] = field(default_factory=list)
    features: set[str] = field(default_factory=set)
    # Any directive makes the fast path decline: only some documents have them.
    directive_odds: float = 0.0
    aliases: int = 0

    def chance(self, feature: str, p: float = 0.3) -> bool:
        taken = self.random.random() < p
        if taken:
            self.features.add(feature)
        return taken

    def variable(self, type_text: str, value: Any, default: graphql.ValueNode | None) -> str:
        """A new variable of ``type_text``: given ``value``, or left out when it has a default."""
        name = f"v{len(self.variable_definitions)}"
        with_default = default is not None and self.chance("variable default", 0.3)
        self.variable_definitions.append(
            graphql.VariableDefinitionNode(
                variable=graphql.VariableNode(name=graphql.NameNode(value=name)),
                type=graphql.parse_type(type_text),
                default_value=default if with_default else None,
            )
        )
        if not with_default:
            self.variables[name] = value
        return name

    def directives(self) -> tuple[graphql.DirectiveNode, ...]:
        if not self.chance("@skip/@include", self.directive_odds):
            return ()
        name = self.draw(st.sampled_from(["skip", "include"]))
        flag = self.draw(st.booleans())
        value: graphql.ValueNode = graphql.BooleanValueNode(value=flag)
        if self.chance("variable in a directive", 0.5):
            type_text = self.draw(st.sampled_from(["Boolean!", "Boolean"]))
            value = _variable_node(self.variable(type_text, flag, value))
        argument = graphql.ArgumentNode(name=graphql.NameNode(value="if"), value=value)
        return (graphql.DirectiveNode(name=graphql.NameNode(value=name), arguments=(argument,)),)

    def arguments(
        self, nodes: tuple[graphql.ArgumentNode, ...], definition: graphql.GraphQLField
    ) -> tuple[graphql.ArgumentNode, ...]:
        out = []
        for node in nodes:
            argument_type = definition.args[node.name.value].type
            if self.chance("argument as a variable", 0.5):
                value = graphql.value_from_ast_untyped(node.value)
                type_text = str(argument_type)
                if self.chance("variable of another type", 0.1):
                    value, type_text = 5, type_text.rstrip("!")
                elif self.chance("non-null variable", 0.15):
                    type_text = type_text.rstrip("!") + "!"
                node = graphql.ArgumentNode(
                    name=node.name,
                    value=_variable_node(self.variable(type_text, value, node.value)),
                )
            out.append(node)
        return tuple(out)

    def alias(self) -> graphql.NameNode:
        self.aliases += 1
        if self.random.random() < 0.1:
            return graphql.NameNode(value=self.draw(st.sampled_from(ALIASES)))
        return graphql.NameNode(value=f"a{self.aliases}")

    def field(self, node: graphql.FieldNode, parent: Any, root: bool = False) -> graphql.FieldNode:
        name = node.name.value
        alias = self.alias() if self.chance("alias", 0.3) else node.alias
        selection_set = node.selection_set
        arguments = node.arguments or ()
        if name != "__typename":
            definition = parent.fields[name]
            arguments = self.arguments(tuple(arguments), definition)
            if selection_set is not None:
                named = graphql.get_named_type(definition.type)
                selection_set = self.selection_set(selection_set, named)
        return graphql.FieldNode(
            alias=alias,
            name=node.name,
            arguments=arguments,
            directives=() if root else self.directives(),
            selection_set=selection_set,
        )

    def selection(self, node: graphql.SelectionNode, parent: Any) -> graphql.SelectionNode:
        if isinstance(node, graphql.FieldNode):
            return self.field(node, parent)
        assert isinstance(node, graphql.InlineFragmentNode)
        condition = node.type_condition
        inner = SCHEMA.get_type(condition.name.value) if condition else parent
        return graphql.InlineFragmentNode(
            type_condition=condition,
            directives=self.directives(),
            selection_set=self.selection_set(node.selection_set, inner),
        )

    def selection_set(
        self, selection_set: graphql.SelectionSetNode, parent: Any
    ) -> graphql.SelectionSetNode:
        selections = [self.selection(s, parent) for s in selection_set.selections]
        if self.chance("__typename", 0.4):
            typename = graphql.FieldNode(name=graphql.NameNode(value="__typename"))
            at = self.draw(st.integers(0, len(selections)))
            selections.insert(at, self.field(typename, parent))
        abstract = [t for t in ABSTRACT_TYPES if _contains(t, parent)]
        if abstract and self.chance("fragment on a union", 0.2):
            # On an object type, a fragment on a union containing it selects only __typename.
            typename = graphql.FieldNode(name=graphql.NameNode(value="__typename"))
            on_union = graphql.InlineFragmentNode(
                type_condition=graphql.NamedTypeNode(
                    name=graphql.NameNode(value=self.draw(st.sampled_from(abstract)).name)
                ),
                directives=self.directives(),
                selection_set=graphql.SelectionSetNode(selections=(self.field(typename, parent),)),
            )
            selections.insert(self.draw(st.integers(0, len(selections))), on_union)
        if selections and self.chance("a field asked twice", 0.15):
            selections.append(self.draw(st.sampled_from(selections)))
        if len(selections) > 1 and self.chance("order", 0.3):
            selections = self.draw(st.permutations(selections))
        if selections and self.chance("fragment", 0.4):
            start = self.draw(st.integers(0, len(selections) - 1))
            end = self.draw(st.integers(start + 1, len(selections)))
            selections[start:end] = [self.fragment(selections[start:end], parent)]
        return graphql.SelectionSetNode(selections=tuple(selections))

    def fragment(self, selections: list[Any], parent: Any) -> graphql.SelectionNode:
        """``selections`` moved into an inline fragment, or a named one, on ``parent``."""
        condition = graphql.NamedTypeNode(name=graphql.NameNode(value=parent.name))
        inner = graphql.SelectionSetNode(selections=tuple(selections))
        if self.draw(st.booleans()):
            self.features.add("named fragment")
            name = f"F{len(self.fragments)}"
            self.fragments.append(
                graphql.FragmentDefinitionNode(
                    name=graphql.NameNode(value=name), type_condition=condition, selection_set=inner
                )
            )
            return graphql.FragmentSpreadNode(
                name=graphql.NameNode(value=name), directives=self.directives()
            )
        self.features.add("inline fragment")
        without_condition = self.draw(st.booleans())
        return graphql.InlineFragmentNode(
            type_condition=None if without_condition else condition,
            directives=self.directives(),
            selection_set=inner,
        )


ABSTRACT_TYPES = sorted(
    (t for t in SCHEMA.type_map.values() if graphql.is_abstract_type(t)), key=lambda t: t.name
)


def _contains(abstract: Any, parent: Any) -> bool:
    return graphql.is_object_type(parent) and SCHEMA.is_sub_type(abstract, parent)


def _variable_node(name: str) -> graphql.VariableNode:
    return graphql.VariableNode(name=graphql.NameNode(value=name))


def _identity(document: graphql.DocumentNode) -> graphql.DocumentNode:
    return document


@dataclass(frozen=True)
class Request:
    """A GraphQL request (a ``subscribe`` message's payload, or an HTTP request's body), and the
    rewrites its document went through."""

    query: str
    variables: dict[str, Any]
    operation_name: str | None
    features: frozenset[str]


def _rewrite(draw: st.DrawFn) -> Rewrite:
    random = Random(draw(st.integers(0, 2**32)))
    return Rewrite(draw, random, directive_odds=draw(st.sampled_from([0.0, 0.0, 0.2])))


def _request(
    draw: st.DrawFn,
    rewrite: Rewrite,
    operation: graphql.OperationType,
    selection_set: graphql.SelectionSetNode,
) -> Request:
    """The operation, named or not, with its variables and fragments, maybe after another one
    (then picked by name)."""
    named = rewrite.chance("named operation", 0.4)
    definitions: list[graphql.DefinitionNode] = [
        graphql.OperationDefinitionNode(
            operation=operation,
            name=graphql.NameNode(value="Main") if named else None,
            variable_definitions=tuple(rewrite.variable_definitions),
            selection_set=selection_set,
        ),
        *rewrite.fragments,
    ]
    operation_name = None
    if named and rewrite.chance("a second operation", 0.5):
        definitions.append(graphql.parse("query Other { __typename }").definitions[0])
        operation_name = "Main"
    elif named and draw(st.booleans()):
        operation_name = "Main"
    document = graphql.DocumentNode(definitions=tuple(definitions))
    return Request(
        graphql.print_ast(document),
        rewrite.variables,
        operation_name,
        frozenset(rewrite.features),
    )


@st.composite
def subscriptions(draw: st.DrawFn) -> Request:
    # A subscription has one root field; ``notifications`` (the fast path's) half the time.
    name = draw(st.just("notifications") | st.sampled_from(sorted(SUBSCRIPTION.fields)))
    base = draw(queries(SUBSCRIPTION_ROOTS, fields=[name], print_ast=_identity))
    operation = base.definitions[0]
    assert isinstance(operation, graphql.OperationDefinitionNode)
    root = operation.selection_set.selections[0]
    assert isinstance(root, graphql.FieldNode)
    rewrite = _rewrite(draw)
    # No directive, nor a second field (even ``__typename``), at a subscription's root.
    selected: graphql.SelectionNode = rewrite.field(root, SUBSCRIPTION, root=True)
    if rewrite.chance("fragment at the root", 0.1):
        selected = rewrite.fragment([selected], SUBSCRIPTION)
    selection_set = graphql.SelectionSetNode(selections=(selected,))
    return _request(draw, rewrite, graphql.OperationType.SUBSCRIPTION, selection_set)


@st.composite
def query_requests(draw: st.DrawFn) -> Request:
    base = draw(queries(SCHEMA, custom_scalars=CUSTOM_SCALARS, print_ast=_identity))
    operation = base.definitions[0]
    assert isinstance(operation, graphql.OperationDefinitionNode)
    rewrite = _rewrite(draw)
    selection_set = rewrite.selection_set(operation.selection_set, SCHEMA.query_type)
    return _request(draw, rewrite, graphql.OperationType.QUERY, selection_set)


_text = st.text(max_size=12)
_json = st.recursive(
    # Integers within 64 bits: the live wire (orjson) carries no others.
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False)
    | _text,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(_text, children, max_size=3),
    max_leaves=8,
)
_moments = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)


_actions = st.builds(
    lambda label, target: {"label": label, **target},
    _text,
    st.one_of(st.builds(lambda u: {"url": u}, _text), st.builds(lambda n: {"name": n}, _text)),
)


@st.composite
def new_notifications(draw: st.DrawFn) -> NewNotification:
    created_at = draw(_moments)
    read_after = draw(st.none() | st.timedeltas(timedelta(0), timedelta(days=30)))
    entry = InboxEntry(
        delivery_id=draw(_text),
        user_id="u1",
        event_id=draw(_text),
        event_type=draw(_text),
        title=draw(st.none() | _text),
        body=draw(st.none() | _text),
        data=draw(st.dictionaries(_text, _json, max_size=3)),
        created_at=created_at,
        seq=draw(st.integers(1, 2**40)),
        read_at=None if read_after is None else created_at + read_after,
        actions=draw(st.lists(_actions, max_size=2)),
    )
    return NewNotification(entry)


# The live messages a subscription passes on, as read from the wire (Redis pub/sub).
live_messages = st.one_of(
    new_notifications(),
    st.builds(
        lambda ids, read: ReadChange(ids, read, not read),
        st.lists(_text, max_size=4),
        st.booleans(),
    ),
).map(lambda message: decode(encode(message), user_id="u1"))


class _OneItem:
    """An opened inbox stream that yields one item."""

    def __init__(self, item: InboxEntry | ReadChange) -> None:
        self.item = item

    async def updates(self, close: Any) -> AsyncIterator[InboxEntry | ReadChange]:
        yield self.item

    async def aclose(self) -> None:
        pass


async def on_graphql_core(run: Any, request: Request) -> Any:
    """``graphql.subscribe`` or ``graphql.execute`` of the request on the schema, awaited."""
    result = run(
        SCHEMA,
        graphql.parse(request.query),
        variable_values=request.variables,
        operation_name=request.operation_name,
        context_value=object(),
    )
    return await result if inspect.isawaitable(result) else result


async def executor_result(
    request: Request, item: InboxEntry | ReadChange
) -> tuple[dict[str, Any], list[str | None]]:
    """graphql-core's payload for the first event, and the ``since`` the stream was opened
    from (none when the subscription failed before)."""
    opened: list[str | None] = []

    async def open_inbox_stream(context: Any, since: str | None) -> _OneItem:
        opened.append(since)
        return _OneItem(item)

    with mock.patch.object(inbox_resolvers, "open_inbox_stream", open_inbox_stream):
        result = await on_graphql_core(graphql.subscribe, request)
        if isinstance(result, graphql.ExecutionResult):
            return result.formatted, opened
        try:
            first = await anext(result)
        finally:
            await result.aclose()
    return first.formatted, opened


def fast_path_result(
    request: Request, item: InboxEntry | ReadChange
) -> tuple[dict[str, Any], str | None] | None:
    """The fast path's payload and ``since``; None when it declines (Strawberry runs it)."""
    plan = compile_notifications(
        SCHEMA, HERALD_SCHEMA.documents, request.query, request.operation_name
    )
    if plan is None:
        return None
    try:
        since = plan.since(request.variables)
    except Unsupported:
        return None
    return plan.result(item), since


def assert_same_as_executor(
    runner: asyncio.Runner, request: Request, message: NewNotification | ReadChange
) -> bool:
    """Whether the fast path took the document; if it did, it answered as graphql-core."""
    item = message.entry if isinstance(message, NewNotification) else message
    fast = fast_path_result(request, item)
    if fast is None:
        return False
    expected, opened = runner.run(executor_result(request, item))
    payload, since = fast
    assert payload == expected, (request, item)
    assert orjson.dumps(payload) == orjson.dumps(expected), "the same keys in another order"
    assert opened == [since], "the stream opened from another cursor"
    return True


def test_the_fast_path_answers_as_graphql_cores_executor() -> None:
    counts: Counter[str] = Counter()

    @EXAMPLES
    @given(request=subscriptions(), message=live_messages)
    def compare(request: Request, message: NewNotification | ReadChange) -> None:
        counts["generated"] += 1
        if graphql.validate(SCHEMA, graphql.parse(request.query)):
            counts["invalid"] += 1
            return
        if assert_same_as_executor(runner, request, message):
            counts["fast path"] += 1
            counts.update(f"fast path with {f}" for f in request.features)
        else:
            counts["declined"] += 1

    with asyncio.Runner() as runner:
        compare()
    print(f"\ndifferential: {dict(counts)}")
    # The comparison must have covered what clients write, on both roads.
    assert counts["fast path"] >= MAX_EXAMPLES // 5, counts
    assert counts["declined"] > 0, counts
    for feature in ("alias", "__typename", "named fragment", "inline fragment"):
        assert counts[f"fast path with {feature}"] > 0, (feature, counts)
    assert counts["fast path with argument as a variable"] > 0, counts


ROLES = ("admin", "manager", "service", "user")


async def http_body(client: httpx.AsyncClient, request: Request, token: str) -> Any:
    response = await client.post(
        "/graphql",
        json={
            "query": request.query,
            "variables": request.variables,
            "operationName": request.operation_name,
        },
        headers={"Accept": "application/json", "Authorization": f"Bearer {token}"},
    )
    return response.json()


async def graphql_core_body(services: Services, request: Request, token: str) -> Any:
    """graphql-core's ``graphql()`` with the context a request gets, its errors as Herald gives
    any error (backend/schema/errors.py), in the GraphQL-over-HTTP body: no ``data`` when
    nothing was executed."""
    context = Context(services=services, authorization=f"Bearer {token}")
    try:
        result = await graphql.graphql(
            SCHEMA,
            request.query,
            variable_values=request.variables,
            operation_name=request.operation_name,
            context_value=context,
        )
    finally:
        await context.close()
    body: dict[str, Any] = {}
    if result.errors:
        body["errors"] = [e.formatted for e in HeraldMaskErrors().mask(list(result.errors))]
    if result.data is not None or any(e.path is not None for e in result.errors or ()):
        body["data"] = result.data
    return orjson.loads(orjson.dumps(body))


def _comparable(body: Any) -> Any:
    """The body, its errors in a fixed order: sibling fields resolve concurrently, and their
    errors are listed as they happen. When a non-null root field failed (``data`` null),
    graphql-core cancels its siblings at that first error, so which others were listed depends
    on timing: only the data is compared, and that there are errors."""
    errors = sorted(body.get("errors", ()), key=lambda e: orjson.dumps(e))
    if "data" in body and body["data"] is None:
        return {"data": None, "errors": bool(errors)}
    return {**body, "errors": errors} if errors else body


@settings(
    max_examples=int(os.environ.get("HERALD_DIFFERENTIAL_QUERIES", "60")),
    deadline=None,
    derandomize=DERANDOMIZE,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
    ],
    database=None,
    print_blob=True,
)
@given(request=query_requests(), role=st.sampled_from(ROLES))
async def test_the_http_endpoint_answers_queries_as_graphql_core(
    app: Any, app_services: Services, engine: Any, settings: Any, request: Request, role: str
) -> None:
    # Only what Herald's own validation accepts (its depth and alias limits included) runs.
    document = graphql.parse(request.query)
    assume(not HERALD_SCHEMA.documents.validate(SCHEMA, document))
    token = token_for(settings, role, sub=f"differential-{role}")
    # Both read the same database state, each in a transaction rolled back afterwards (one
    # execution's leftovers, a failed statement, never reach the other).
    async with rolled_back(app_services, engine):
        expected = await graphql_core_body(app_services, request, token)
    transport = httpx.ASGITransport(app=app)
    async with (
        rolled_back(app_services, engine),
        httpx.AsyncClient(transport=transport, base_url="http://herald.test") as client,
    ):
        body = await http_body(client, request, token)
    assert _comparable(body) == _comparable(expected), request
    assert orjson.dumps(body.get("data")) == orjson.dumps(expected.get("data")), "key order"


# Compiled plans for queries and mutations (backend/schema/plans.py), against graphql-core.
#
# A plan runs the root field's resolver itself, so the two roads are compared on the same
# resolver result: for each document, the root field's resolver is replaced by one that gives
# a drawn outcome (an object of any type the field may give, its fields filled with values of
# their types, sometimes a null where the schema forbids one, a value its scalar cannot
# serialize or an object of no type the field gives; or an error Herald raises, or an
# unexpected one). The resolver must be called as often, with the same arguments, on both
# roads: a plan never calls it twice, even when graphql-core completes what it gave.

OPERATION_ROOTS: dict[graphql.OperationType, graphql.GraphQLObjectType] = {
    graphql.OperationType.QUERY: SCHEMA.query_type,  # type: ignore[dict-item]
    graphql.OperationType.MUTATION: SCHEMA.mutation_type,  # type: ignore[dict-item]
}


def _leaf_only(field: graphql.GraphQLField) -> bool:
    """Whether every type the field may give has leaf fields only: a plan's shape, which
    hypothesis-graphql's random selections rarely keep to over the whole schema."""
    named = graphql.get_named_type(field.type)
    if graphql.is_list_type(graphql.get_nullable_type(field.type)) or graphql.is_leaf_type(named):
        return False
    types = SCHEMA.get_possible_types(named) if graphql.is_abstract_type(named) else [named]
    return all(
        graphql.is_leaf_type(graphql.get_named_type(f.type))
        for t in types
        for f in t.fields.values()  # type: ignore[union-attr]
    )


PLAN_SHAPED = {
    kind: sorted(name for name, f in root.fields.items() if _leaf_only(f))
    for kind, root in OPERATION_ROOTS.items()
}
assert "sendEvent" in PLAN_SHAPED[graphql.OperationType.MUTATION]


@st.composite
def operation_requests(draw: st.DrawFn) -> tuple[Request, graphql.GraphQLField]:
    kind = draw(st.sampled_from(sorted(OPERATION_ROOTS, key=str)))
    root = OPERATION_ROOTS[kind]
    names = PLAN_SHAPED[kind] if PLAN_SHAPED[kind] and draw(st.booleans()) else sorted(root.fields)
    name = draw(st.sampled_from(names))
    generate = queries if kind is graphql.OperationType.QUERY else mutations
    base = draw(generate(SCHEMA, fields=[name], custom_scalars=CUSTOM_SCALARS, print_ast=_identity))
    operation = base.definitions[0]
    assert isinstance(operation, graphql.OperationDefinitionNode)
    (field_node,) = operation.selection_set.selections
    assert isinstance(field_node, graphql.FieldNode)
    rewrite = _rewrite(draw)
    selected: list[graphql.SelectionNode] = [rewrite.field(field_node, root)]
    if rewrite.chance("fragment at the root", 0.1):
        selected = [rewrite.fragment(selected, root)]
    if rewrite.chance("a second root field", 0.1):  # a plan declines it
        selected.append(graphql.FieldNode(name=graphql.NameNode(value="__typename")))
    selection_set = graphql.SelectionSetNode(selections=tuple(selected))
    return _request(draw, rewrite, kind, selection_set), root.fields[name]


class _Stranger:
    """An object of no type in the schema: no union resolves it."""


_SCALAR_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "String": _text,
    "ID": _text | st.integers(0, 10**9),
    "Int": st.integers(-(2**31), 2**31 - 1),
    "Float": st.floats(allow_nan=False, allow_infinity=False),
    "Boolean": st.booleans(),
    "DateTime": _moments,
    "JSON": _json,
}
# Values each scalar refuses to serialize (graphql-core reports the field's error).
_SCALAR_MISFITS: dict[str, st.SearchStrategy[Any]] = {
    "String": st.builds(object),
    "ID": st.builds(object) | st.floats(0.5, 1e6),
    "Int": st.integers(2**31, 2**40) | st.just("seven"),
    "Float": st.just("seven") | st.builds(object),
    "Boolean": st.just("yes") | st.integers(2, 9),
    "DateTime": _text,
}


def _output(draw: st.DrawFn, type_: Any, depth: int) -> Any:
    """A value a resolver might give for ``type_``: mostly fitting, sometimes not."""
    if graphql.is_non_null_type(type_):
        if draw(st.integers(0, 24)) == 0:
            return None  # the executor's "Cannot return null for non-nullable field"
        return _output(draw, type_.of_type, depth)
    if draw(st.integers(0, 9)) == 0:
        return None
    if graphql.is_list_type(type_):
        if draw(st.integers(0, 24)) == 0:
            return 7  # not a list
        return [_output(draw, type_.of_type, depth) for _ in range(draw(st.integers(0, 2)))]
    if graphql.is_enum_type(type_):
        if draw(st.integers(0, 24)) == 0:
            return "not-a-member"
        return draw(st.sampled_from([v.value for v in type_.values.values()]))
    if graphql.is_scalar_type(type_):
        misfit = _SCALAR_MISFITS.get(type_.name)
        if misfit is not None and draw(st.integers(0, 24)) == 0:
            return draw(misfit)
        return draw(_SCALAR_VALUES[type_.name])
    if depth > 1:
        return None
    return _object(draw, type_, depth + 1)


def _object(draw: st.DrawFn, type_: Any, depth: int) -> Any:
    """An instance of the Strawberry class behind an object type (or one of an abstract
    type's), its plain fields filled."""
    if graphql.is_abstract_type(type_):
        if draw(st.integers(0, 19)) == 0:
            return _Stranger()
        type_ = draw(st.sampled_from(SCHEMA.get_possible_types(type_)))
    instance = object.__new__(type_.extensions["strawberry-definition"].origin)
    for field_def in type_.fields.values():
        definition = field_def.extensions.get("strawberry-definition")
        if definition is not None and definition.is_basic_field:
            object.__setattr__(
                instance, definition.python_name, _output(draw, field_def.type, depth)
            )
    return instance


@dataclass
class Outcome:
    """What the root resolver gives: a value (awaited or not), or an error raised."""

    value: Any = None
    error: Exception | None = None
    awaitable: bool = True

    def resolver(self, calls: list[dict[str, Any]]) -> Any:
        def given(_source: Any, _info: Any, **args: Any) -> Any:
            calls.append(args)
            if self.error is not None:
                raise self.error
            return self.value

        async def awaited(source: Any, info: Any, **args: Any) -> Any:
            return given(source, info, **args)

        return awaited if self.awaitable else given


@st.composite
def outcomes(draw: st.DrawFn, field_def: graphql.GraphQLField) -> Outcome:
    kind = draw(st.sampled_from(["value"] * 6 + ["herald error", "unexpected error"]))
    awaitable = draw(st.booleans())
    if kind == "herald error":
        error: Exception = draw(
            st.sampled_from(
                [
                    HeraldNotFound("No such template", field="slug"),
                    HeraldValidation("Too long", field="title"),
                ]
            )
        )
        return Outcome(error=error, awaitable=awaitable)
    if kind == "unexpected error":
        return Outcome(error=RuntimeError("the store went away"), awaitable=awaitable)
    return Outcome(value=_output(draw, field_def.type, 0), awaitable=awaitable)


def _body(data: Any, errors: list[graphql.GraphQLError] | None) -> dict[str, Any]:
    body: dict[str, Any] = {"data": data}
    if errors:
        body["errors"] = [e.formatted for e in errors]
    return body


async def planned_body(
    request: Request, field_def: graphql.GraphQLField, outcome: Outcome
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Herald's ``execute`` (plans on), as ``POST /graphql`` runs it."""
    calls: list[dict[str, Any]] = []
    with mock.patch.object(field_def, "resolve", outcome.resolver(calls)):
        result = await HERALD_SCHEMA.execute(
            request.query,
            variable_values=request.variables,
            context_value=object(),
            operation_name=request.operation_name,
        )
    return _body(result.data, result.errors), calls


async def executor_body(
    request: Request, field_def: graphql.GraphQLField, outcome: Outcome
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """graphql-core's ``execute``, its errors masked and coded as Herald gives them."""
    calls: list[dict[str, Any]] = []
    with mock.patch.object(field_def, "resolve", outcome.resolver(calls)):
        result = await on_graphql_core(graphql.execute, request)
    errors = HeraldMaskErrors().mask(list(result.errors)) if result.errors else None
    return _body(result.data, errors), calls


def _planned(request: Request, document: graphql.DocumentNode) -> bool:
    operation = graphql.get_operation_ast(document, request.operation_name)
    assert operation is not None
    try:
        compile_operation(SCHEMA, document, operation)
    except Unsupported:
        return False
    return True


def test_plans_answer_as_graphql_cores_executor() -> None:
    counts: Counter[str] = Counter()

    @EXAMPLES
    @given(data=st.data())
    def compare(data: st.DataObject) -> None:
        request, field_def = data.draw(operation_requests())
        counts["generated"] += 1
        document = graphql.parse(request.query)
        if HERALD_SCHEMA.documents.validate(SCHEMA, document):
            counts["invalid"] += 1
            return
        if not _planned(request, document):
            counts["declined"] += 1
            return
        outcome = data.draw(outcomes(field_def))
        body, calls = runner.run(planned_body(request, field_def, outcome))
        expected, expected_calls = runner.run(executor_body(request, field_def, outcome))
        assert calls == expected_calls, (request, outcome)
        assert body == expected, (request, outcome)
        assert orjson.dumps(body) == orjson.dumps(expected), "the same keys in another order"
        counts["planned"] += 1
        counts["planned, with errors" if "errors" in body else "planned, clean"] += 1
        counts[f"planned, {'raised' if outcome.error else 'given'}"] += 1
        counts.update(f"planned with {f}" for f in request.features)
        operation = graphql.get_operation_ast(document, request.operation_name)
        assert operation is not None
        counts[f"planned {operation.operation.value}"] += 1

    with asyncio.Runner() as runner:
        compare()
    print(f"\nplans: {dict(counts)}")
    assert counts["planned"] >= MAX_EXAMPLES // 5, counts
    assert counts["declined"] > 0, counts
    for what in (
        "planned, clean",
        "planned, with errors",
        "planned, raised",
        "planned mutation",
        "planned query",
        "planned with alias",
        "planned with __typename",
        "planned with named fragment",
        "planned with inline fragment",
        "planned with argument as a variable",
    ):
        assert counts[what] > 0, (what, counts)
