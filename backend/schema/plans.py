"""Compiled operations: answers for the documents clients send most, without graphql-core's
executor machinery, and exactly what that executor gives.

Two roads use it:

* the WebSocket ``notifications`` subscription (backend/live_socket.py), which projects each
  inbox item through a :class:`SelectionCompiler`'s leaves;
* ``POST /graphql`` (``HeraldSchema.execute``) for an :class:`OperationPlan`: a query or
  mutation with one root field whose result is an object, or a union of objects, read for leaf
  fields only (``mutation { sendEvent(input: $i) { __typename ... on EventAccepted { eventId }
  } }``). The executor's own build step coerces the variables; the root field's resolver
  (Strawberry's, unchanged) is called with the resolve info the executor would build; the
  result is projected on the compiled leaves.

A plan answers only what it can answer exactly. A document it cannot (directives, arguments
on a leaf, a nested object, a field with its own resolver) gets no plan and runs on the
executor. When something happens at run time that the executor would report (the resolver
raises, a null where the schema forbids one, a value a scalar cannot serialize, a type that
cannot be resolved), :class:`Replay` carries what the resolver gave back and the executor
completes the operation with it: the resolver is never called twice. tests/test_differential.py
compares both roads over documents generated from the whole schema.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLAbstractType,
    GraphQLField,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    Undefined,
    get_argument_values,
    is_abstract_type,
    is_leaf_type,
)
from graphql.pyutils import Path

# Response key → the value for one object: the GraphQL type's serializer applied to a field.
Leaf = tuple[str, Callable[[Any], Any]]


class Unsupported(Exception):
    """The document asks for something a plan does not answer; the executor runs it."""


class Inexact(Exception):
    """A value the executor would not complete as a plan does (it reports an error, or
    propagates a null): the executor completes it instead."""


class Replay(Exception):
    """The root field's resolver ran and the plan cannot complete what it gave: the executor
    completes the operation with ``value`` (or ``error`` raised) as that field's result."""

    def __init__(self, value: Any = None, error: Exception | None = None) -> None:
        super().__init__("the executor completes this result")
        self.value = value
        self.error = error

    def resolve(self, next_: Any, source: Any, info: Any, **args: Any) -> Any:
        """As graphql-core middleware (an object with ``resolve``): the root field gives what
        its resolver gave once; every other field resolves as usual."""
        if info.path.prev is not None:
            return next_(source, info, **args)
        if self.error is not None:
            raise self.error
        return self.value


def _strict(serialize: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``serialize``, with the executor's check: a leaf may not serialize to null."""

    def leaf(value: Any) -> Any:
        if isinstance(value, Exception):
            raise Inexact
        serialized = serialize(value)
        if serialized is None or serialized is Undefined:
            raise Inexact
        return serialized

    return leaf


def _field(attribute: str, nullable: bool, complete: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """A field read off an object, null where the schema allows it, completed otherwise."""

    def value(source: Any) -> Any:
        found = getattr(source, attribute)
        if found is None or found is Undefined:
            if nullable:
                return None
            raise Inexact
        return complete(found)

    return value


def _list(complete_item: Callable[[Any], Any], items_nullable: bool) -> Callable[[Any], Any]:
    """A list's items, each completed; a value other than a list or tuple goes to the
    executor, whose iterable rules decide."""

    def complete(values: Any) -> list[Any]:
        if not isinstance(values, list | tuple):
            raise Inexact
        out: list[Any] = []
        for v in values:
            if v is None or v is Undefined:
                if not items_nullable:
                    raise Inexact
                out.append(None)
            else:
                out.append(complete_item(v))
        return out

    return complete


def _leaf_value(field_type: Any, attribute: str) -> Callable[[Any], Any]:
    """The value the executor gives for a leaf (or list of leaves) field read off an object;
    Inexact where it would report an error instead."""
    nullable = not isinstance(field_type, GraphQLNonNull)
    inner = field_type if nullable else field_type.of_type
    if isinstance(inner, GraphQLList):
        item = inner.of_type
        items_nullable = not isinstance(item, GraphQLNonNull)
        if not items_nullable:
            item = item.of_type
        if isinstance(item, GraphQLList | GraphQLNonNull) or not is_leaf_type(item):
            raise Unsupported
        return _field(attribute, nullable, _list(_strict(item.serialize), items_nullable))
    if not is_leaf_type(inner):
        raise Unsupported
    return _field(attribute, nullable, _strict(inner.serialize))


def _attribute(field: GraphQLField) -> str:
    """The attribute a Strawberry field without a resolver reads (its default resolver), or
    Unsupported for a field the executor would resolve some other way."""
    definition = (field.extensions or {}).get("strawberry-definition")
    if (
        definition is None
        or not definition.is_basic_field
        or getattr(definition, "default_resolver", getattr) is not getattr
    ):
        raise Unsupported
    name: str = definition.python_name
    return name


class SelectionCompiler:
    """Selection sets compiled to leaves per object type, in the executor's field order.

    ``nested`` allows a field selecting a list of objects (a notification's actions); the HTTP
    plan keeps to leaves."""

    def __init__(
        self,
        schema: GraphQLSchema,
        fragments: dict[str, FragmentDefinitionNode],
        *,
        nested: bool = True,
    ):
        self.schema = schema
        self.fragments = fragments
        self.nested = nested

    def _applies(self, condition: str | None, object_type: GraphQLObjectType) -> bool:
        if condition is None or condition == object_type.name:
            return True
        named = self.schema.get_type(condition)
        return is_abstract_type(named) and self.schema.is_sub_type(named, object_type)

    def collect(
        self, selection_set: SelectionSetNode, object_type: GraphQLObjectType, out: dict[str, Any]
    ) -> None:
        """The leaves for one object type, in graphql-core's field-collection order."""
        for selection in selection_set.selections:
            if selection.directives:
                raise Unsupported
            if isinstance(selection, FieldNode):
                key = selection.alias.value if selection.alias else selection.name.value
                if selection.selection_set is not None and key in out:
                    raise Unsupported  # graphql-core merges the sub-selections
                if key in out:
                    continue  # validation guarantees it is the same field
                name = selection.name.value
                if name == "__typename":
                    typename = object_type.name
                    out[key] = lambda _source, typename=typename: typename
                    continue
                if selection.arguments:
                    raise Unsupported
                field = object_type.fields[name]
                attribute = _attribute(field)
                if selection.selection_set is not None:
                    out[key] = self._objects(selection.selection_set, field.type, attribute)
                else:
                    out[key] = _leaf_value(field.type, attribute)
            elif isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition
                if self._applies(condition.name.value if condition else None, object_type):
                    self.collect(selection.selection_set, object_type, out)
            elif isinstance(selection, FragmentSpreadNode):
                fragment = self.fragments[selection.name.value]
                if fragment.variable_definitions:
                    raise Unsupported
                if self._applies(fragment.type_condition.name.value, object_type):
                    self.collect(fragment.selection_set, object_type, out)

    def _objects(
        self, selection_set: SelectionSetNode, field_type: Any, attribute: str
    ) -> Callable[[Any], Any]:
        """A list of objects (``[T!]`` or ``[T!]!``, as a notification's actions), each
        projected on its own leaves."""
        if not self.nested:
            raise Unsupported
        nullable = not isinstance(field_type, GraphQLNonNull)
        inner = field_type if nullable else field_type.of_type
        if not isinstance(inner, GraphQLList) or not isinstance(inner.of_type, GraphQLNonNull):
            raise Unsupported
        item = inner.of_type.of_type
        if not isinstance(item, GraphQLObjectType) or item.is_type_of is not None:
            raise Unsupported
        leaves = self.leaves(selection_set, item.name)

        def project(value: Any) -> dict[str, Any]:
            return {key: leaf(value) for key, leaf in leaves}

        return _field(attribute, nullable, _list(project, items_nullable=False))

    def leaves(self, selection_set: SelectionSetNode, type_name: str) -> tuple[Leaf, ...]:
        object_type = self.schema.get_type(type_name)
        assert isinstance(object_type, GraphQLObjectType)
        out: dict[str, Any] = {}
        self.collect(selection_set, object_type, out)
        return tuple(out.items())


def fragment_definitions(document: DocumentNode) -> dict[str, FragmentDefinitionNode]:
    return {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}


@dataclass(frozen=True, slots=True)
class OperationPlan:
    """A compiled query or mutation: one root field, an object (or a union of objects) read
    for leaves."""

    root_type: GraphQLObjectType
    field: GraphQLField
    field_nodes: list[FieldNode]
    key: str
    nullable: bool
    abstract: GraphQLAbstractType | None
    # Each object type the field may give: the type, and its leaves.
    objects: dict[str, tuple[GraphQLObjectType, tuple[Leaf, ...]]]

    async def run(self, executor: Any, root_value: Any) -> dict[str, Any]:
        """The operation's ``data``, given the executor graphql-core built for it (variables
        coerced). Raises :class:`Unsupported` before the resolver runs (the executor runs the
        operation instead), :class:`Replay` after."""
        node = self.field_nodes[0]
        path = Path(None, self.key, self.root_type.name)
        info = executor.build_resolve_info(self.field, self.field_nodes, self.root_type, path)
        try:
            args = (
                get_argument_values(
                    self.field, node, executor.variable_values, None, executor.hide_suggestions
                )
                if self.field.args or node.arguments
                else {}
            )
        except Exception as error:  # the executor reports it as a field error
            raise Unsupported from error
        try:
            result = self.field.resolve(root_value, info, **args)  # type: ignore[misc]
            if executor.is_awaitable(result):
                result = await result
        except Exception as error:
            raise Replay(error=error) from None
        try:
            return {self.key: self._complete(result, info, executor)}
        except Exception:  # Inexact, or anything a projection raised: the executor decides
            raise Replay(value=result) from None

    def _complete(self, result: Any, info: Any, executor: Any) -> dict[str, Any] | None:
        if result is None or result is Undefined:
            if self.nullable:
                return None
            raise Inexact
        if isinstance(result, Exception):
            raise Inexact
        if self.abstract is not None:
            name = self.abstract.resolve_type(result, info, self.abstract)  # type: ignore[misc]
            if not isinstance(name, str) or name not in self.objects:
                raise Inexact
        else:
            (name,) = self.objects
        object_type, leaves = self.objects[name]
        if object_type.is_type_of is not None:
            matches = object_type.is_type_of(result, info)
            if executor.is_awaitable(matches) or not matches:
                raise Inexact
        return {key: value(result) for key, value in leaves}


def compile_operation(
    schema: GraphQLSchema, document: DocumentNode, operation: OperationDefinitionNode
) -> OperationPlan:
    """A plan for a validated query or mutation, or Unsupported."""
    if operation.operation is OperationType.SUBSCRIPTION or operation.directives:
        raise Unsupported
    selections = operation.selection_set.selections
    if len(selections) != 1 or not isinstance(selections[0], FieldNode):
        raise Unsupported
    node = selections[0]
    if node.directives or node.selection_set is None or node.name.value.startswith("__"):
        raise Unsupported
    root_type = schema.get_root_type(operation.operation)
    assert root_type is not None  # validated
    field = root_type.fields[node.name.value]
    if field.resolve is None:
        raise Unsupported
    field_type = field.type
    nullable = not isinstance(field_type, GraphQLNonNull)
    named = field_type if nullable else field_type.of_type
    compiler = SelectionCompiler(schema, fragment_definitions(document), nested=False)
    abstract: GraphQLAbstractType | None = None
    if isinstance(named, GraphQLObjectType):
        types = [named]
    elif is_abstract_type(named):
        abstract = named
        if abstract.resolve_type is None:
            raise Unsupported
        types = list(schema.get_possible_types(abstract))
    else:
        raise Unsupported  # a list, or a leaf at the root
    objects = {t.name: (t, compiler.leaves(node.selection_set, t.name)) for t in types}
    return OperationPlan(
        root_type=root_type,
        field=field,
        field_nodes=[node],
        key=node.alias.value if node.alias else node.name.value,
        nullable=nullable,
        abstract=abstract,
        objects=objects,
    )


class OperationPlans:
    """Plans by (document text, operation name), bounded (the oldest goes first); None (no
    plan) is remembered too."""

    def __init__(self, schema: GraphQLSchema, maxsize: int = 256) -> None:
        self.schema = schema
        self.maxsize = maxsize
        self._plans: dict[tuple[str, str | None], OperationPlan | None] = {}

    def get(
        self,
        query: str,
        operation_name: str | None,
        document: DocumentNode,
        operation: OperationDefinitionNode,
    ) -> OperationPlan | None:
        """The plan for ``operation`` of ``document``, the validated parse of ``query``."""
        key = (query, operation_name)
        try:
            return self._plans[key]
        except KeyError:
            pass
        try:
            plan: OperationPlan | None = compile_operation(self.schema, document, operation)
        except Unsupported:
            plan = None
        if len(self._plans) >= self.maxsize:
            del self._plans[next(iter(self._plans))]
        self._plans[key] = plan
        return plan
