"""Strawberry's private schema and error-masking step."""

from __future__ import annotations

from graphql import GraphQLError, GraphQLSchema
from strawberry import Schema
from strawberry.extensions import MaskErrors


def graphql_core_schema(schema: Schema) -> GraphQLSchema:
    """The graphql-core schema a Strawberry schema executes against.

    Written against strawberry-graphql 0.341: ``Schema._schema``, built in ``Schema.__init__``;
    Strawberry has no public accessor for it.
    """
    graphql_schema: GraphQLSchema = schema._schema
    return graphql_schema


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
