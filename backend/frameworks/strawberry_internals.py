"""Strawberry's private schema, error-masking step, execution steps and input conversion hook."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import MISSING
from typing import Any, TypeVar

from graphql import GraphQLError, GraphQLSchema
from strawberry import Schema
from strawberry.execution import optimized_is_awaitable
from strawberry.extensions import MaskErrors
from strawberry.relay.types import GlobalID
from strawberry.schema.schema import DEFAULT_ALLOWED_OPERATION_TYPES
from strawberry.types import ExecutionContext
from strawberry.types.arguments import InputContext, _is_leaf_type
from strawberry.types.base import (
    StrawberryList,
    StrawberryMaybe,
    StrawberryOptional,
    get_object_definition,
)
from strawberry.types.enum import has_enum_definition
from strawberry.utils.await_maybe import await_maybe

__all__ = [
    "DEFAULT_ALLOWED_OPERATION_TYPES",
    "MaskErrorsWithHook",
    "await_maybe",
    "compiled_input",
    "execute_kwargs",
    "graphql_core_schema",
    "log_errors",
]

T = TypeVar("T")


def graphql_core_schema(schema: Schema) -> GraphQLSchema:
    """The graphql-core schema a Strawberry schema executes against.

    Written against strawberry-graphql 0.341: ``Schema._schema``, built in ``Schema.__init__``;
    Strawberry has no public accessor for it.
    """
    graphql_schema: GraphQLSchema = schema._schema
    return graphql_schema


def execute_kwargs(schema: Schema, operation_extensions: dict[str, Any] | None) -> dict[str, Any]:
    """The keyword arguments, beyond the document and its inputs, that Strawberry's async
    ``Schema.execute`` gives graphql-core's ``execute``: its awaitable test, its custom context
    arguments, and its execution context class when one is set.

    Written against strawberry-graphql 0.341: ``strawberry.execution.optimized_is_awaitable``,
    ``Schema._get_custom_context_kwargs(operation_extensions)`` and
    ``strawberry.schema._graphql_core.execution_context_class_kwargs``.
    """
    kwargs: dict[str, Any] = {"is_awaitable": optimized_is_awaitable}
    if schema.execution_context_class is not None:
        kwargs["executor_class"] = schema.execution_context_class
    kwargs.update(schema._get_custom_context_kwargs(operation_extensions))
    return kwargs


def log_errors(
    schema: Schema, errors: list[GraphQLError], context: ExecutionContext | None
) -> None:
    """Strawberry's step for an operation's errors before they are masked: field suggestions
    removed when the schema's config asks, then ``process_errors`` (which logs them).

    Written against strawberry-graphql 0.341: ``BaseSchema._process_errors(errors,
    execution_context)``.
    """
    schema._process_errors(errors, context)


class MaskErrorsWithHook(MaskErrors):
    """Strawberry's ``MaskErrors`` with a public step after masking, :meth:`after_masking`,
    and :meth:`mask` for errors raised outside an operation.

    Written against strawberry-graphql 0.341: ``MaskErrors._process_errors(errors)`` masks
    the errors of every result of an operation (each streamed result included) and returns
    the list that replaces them.
    """

    def _process_errors(self, errors: list[GraphQLError]) -> list[GraphQLError]:
        return self.after_masking(super()._process_errors(errors))

    def after_masking(self, errors: list[GraphQLError]) -> list[GraphQLError]:
        """The errors a client gets, given those Strawberry left after masking."""
        return errors

    def mask(self, errors: list[GraphQLError]) -> list[GraphQLError]:
        """``errors`` as an operation's result would carry them."""
        return self._process_errors(errors)


_AS_IS, _LIST_COPY, _CONVERT = 0, 1, 2


def _field_plan(field_type: Any, scalar_registry: Any) -> int:
    """How a value of ``field_type`` is converted: as it is (a scalar or an enum, null
    allowed), as a copy of its list (a list of those), or by Strawberry's conversion."""

    def leaf(type_: Any) -> bool:
        if isinstance(type_, StrawberryMaybe):
            return False  # wrapped in Some: Strawberry's conversion does it
        if isinstance(type_, StrawberryOptional):
            type_ = type_.of_type
        if type_ is GlobalID:
            return False  # decoded from its string
        return _is_leaf_type(type_, scalar_registry) or has_enum_definition(type_)

    if isinstance(field_type, StrawberryMaybe):
        return _CONVERT
    if isinstance(field_type, StrawberryOptional):
        field_type = field_type.of_type
    if isinstance(field_type, StrawberryList):
        return _LIST_COPY if leaf(field_type.of_type) else _CONVERT
    return _AS_IS if leaf(field_type) else _CONVERT


def compiled_input(cls: type[T]) -> type[T]:
    """Decorate a ``@strawberry.input`` class so that its values are built by a plan made
    once, instead of Strawberry resolving every field's annotation on every request.

    The result is what Strawberry's own conversion gives (``convert_argument`` for an input
    type): fields with no default start as ``None``; each field the value holds is converted,
    scalars and enums as they are, lists of them copied (graphql-core shares a default list
    between requests), anything else (nested inputs, ``Maybe``, ``GlobalID``) by Strawberry.

    Written against strawberry-graphql 0.341: ``StrawberryObjectDefinition.from_input``,
    the hook Strawberry calls to build an input value (meant for integrations such as
    ``strawberry.pydantic``), and ``strawberry.types.arguments._is_leaf_type``, the test its
    conversion uses to pass a value through.
    """
    definition = get_object_definition(cls, strict=True)
    assert definition.is_input and definition.from_input is None
    plans: dict[tuple[int, int], tuple[dict[str, None], list[tuple[str, str, Any, int]]]] = {}

    def build(type_: type, value: Mapping[str, Any], context: InputContext) -> Any:
        key = (id(context.config), id(context.scalar_registry))
        plan = plans.get(key)
        if plan is None:
            nulls = {
                f.python_name: None
                for f in definition.fields
                if f.default_value is MISSING and f.default_factory is MISSING
            }
            fields = []
            for f in definition.fields:
                field_type = f.resolve_type(type_definition=definition)
                fields.append(
                    (
                        context.config.name_converter.from_field(f),
                        f.python_name,
                        field_type,
                        _field_plan(field_type, context.scalar_registry),
                    )
                )
            plan = plans[key] = (nulls, fields)
        nulls, fields = plan
        kwargs: dict[str, Any] = dict(nulls)
        for graphql_name, python_name, field_type, how in fields:
            if graphql_name not in value:
                continue
            item = value[graphql_name]
            if how == _AS_IS or item is None:
                kwargs[python_name] = item
            elif how == _LIST_COPY:
                kwargs[python_name] = list(item)
            else:
                kwargs[python_name] = context.convert(item, field_type, graphql_name)
        return type_(**kwargs)

    definition.from_input = build
    return cls
