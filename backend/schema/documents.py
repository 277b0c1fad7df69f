"""Parse and validate each distinct document once.

One extension does what ParserCache, ValidationCache, MaxTokensLimiter and AddValidationRules
do together: on the hot path (the same mutation text from a service, again and again) a
request costs two dictionary look-ups instead of four extensions' hooks, which measurably
shortens a sendEvent (see the README's performance section).

Before any validation rule runs, a document's size *with its fragments expanded* is counted,
once per fragment (:func:`expanded_fields`). Several rules (Strawberry's depth and alias
limiters, graphql-core's introspection depth) walk every fragment spread as if it were
inlined, so a kilobyte of ``fragment F0 on Query { ...F1 ...F1 }`` chains costs them 2^n steps:
such a document is refused in milliseconds, before they see it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from functools import lru_cache
from typing import Any

from graphql import (
    ASTValidationRule,
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLSchema,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    parse,
)
from graphql.validation import specified_rules, validate
from strawberry.extensions import SchemaExtension

from backend.frameworks.strawberry_internals import graphql_core_schema


def _own_selections(selection_set: SelectionSetNode) -> tuple[int, Counter[str]]:
    """Fields written in a selection set (inline fragments included) and its named spreads."""
    fields = 0
    spreads: Counter[str] = Counter()
    stack = [selection_set]
    while stack:
        for selection in stack.pop().selections:
            if isinstance(selection, FieldNode):
                fields += 1
                if selection.selection_set is not None:
                    stack.append(selection.selection_set)
            elif isinstance(selection, InlineFragmentNode):
                stack.append(selection.selection_set)
            elif isinstance(selection, FragmentSpreadNode):
                spreads[selection.name.value] += 1
    return fields, spreads


def expanded_fields(document: DocumentNode, limit: int) -> int:
    """The most fields any operation of ``document`` selects once every fragment spread is
    replaced by its fragment, counted up to ``limit + 1``.

    Each fragment is sized once (memoised), so the count costs time linear in the document
    whatever its spreads multiply to. A spread of an unknown fragment, or one that closes a
    cycle, counts as nothing here: the specified rules report both.
    """
    fragments: dict[str, tuple[int, Counter[str]]] = {}
    operations: list[tuple[int, Counter[str]]] = []
    for definition in document.definitions:
        if isinstance(definition, FragmentDefinitionNode):
            fragments.setdefault(definition.name.value, _own_selections(definition.selection_set))
        elif isinstance(definition, OperationDefinitionNode):
            operations.append(_own_selections(definition.selection_set))

    sizes: dict[str, int] = {}
    in_progress: set[str] = set()

    def size_of(root: str) -> int:
        # Depth-first without recursion: a chain of hundreds of fragments fits in max_tokens.
        stack = [root]
        while stack:
            name = stack[-1]
            if name in sizes:
                stack.pop()
                continue
            own, spreads = fragments[name]
            pending = [s for s in spreads if s in fragments and s not in sizes]
            pending = [s for s in pending if s not in in_progress]
            if pending:
                in_progress.add(name)
                stack.extend(pending)
                continue
            total = own + sum(count * sizes.get(s, 0) for s, count in spreads.items())
            sizes[name] = min(total, limit + 1)
            in_progress.discard(name)
            stack.pop()
        return sizes[root]

    most = 0
    for own, spreads in operations:
        total = own + sum(count * size_of(s) for s, count in spreads.items() if s in fragments)
        most = max(most, min(total, limit + 1))
    return most


def operation_problem(document: DocumentNode, operation_name: str | None) -> str | None:
    """Why the operation to run is not determined (the spec's GetOperation), or None.

    Strawberry takes the first operation when no name is given; the spec makes a document with
    several operations and no ``operationName`` a request error that runs nothing.
    """
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if operation_name is None:
        if len(operations) > 1:
            return (
                "The document has more than one operation: name the one to run in 'operationName'"
            )
        return None
    if any(op.name is not None and op.name.value == operation_name for op in operations):
        return None
    return "'operationName' does not name an operation in the document"


class DocumentCache:
    """Bounded caches of parsed documents (by text) and validation errors (by document)."""

    def __init__(
        self,
        *,
        max_tokens: int,
        max_expanded_fields: int,
        rules: Sequence[type[ASTValidationRule]],
        maxsize: int = 1024,
    ) -> None:
        self.rules = (*specified_rules, *rules)
        self.parse = lru_cache(maxsize=maxsize)(self._parse)
        self.validate = lru_cache(maxsize=maxsize)(self._validate)
        self.checked = lru_cache(maxsize=maxsize)(self._checked)
        self.max_tokens = max_tokens
        self.max_expanded_fields = max_expanded_fields

    def operation_problem(self, query: str, operation_name: str | None) -> str | None:
        """:func:`operation_problem` for a document's text; None for a syntax error, which
        the ordinary path reports with its location."""
        try:
            document = self.parse(query)
        except GraphQLError:
            return None
        return operation_problem(document, operation_name)

    def _parse(self, query: str) -> DocumentNode:
        # A syntax error raises (and is not cached); the text of a failing request rarely
        # repeats, and the error is cheap to find again.
        return parse(query, max_tokens=self.max_tokens)

    def _checked(
        self, schema: GraphQLSchema, query: str
    ) -> tuple[DocumentNode, tuple[GraphQLError, ...]]:
        """A document and its validation errors, by its text: a look-up by ``validate`` hashes
        the whole syntax tree (graphql-core's nodes hash their fields), on every request."""
        document = self.parse(query)
        return document, tuple(self.validate(schema, document))

    def _validate(self, schema: GraphQLSchema, document: DocumentNode) -> list[GraphQLError]:
        limit = self.max_expanded_fields
        if expanded_fields(document, limit) > limit:
            return [
                GraphQLError(
                    f"The document selects more than {limit} fields once its fragments are "
                    "expanded; select fewer fields or spread fragments fewer times"
                )
            ]
        return validate(schema, document, self.rules)


class CachedDocuments(SchemaExtension):
    def __init__(self, cache: DocumentCache) -> None:
        super().__init__()
        self.cache = cache

    def on_parse(self) -> Iterator[None]:
        context = self.execution_context
        if context.query is not None:
            context.graphql_document = self.cache.parse(context.query)
        yield

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        assert context.graphql_document is not None
        context.pre_execution_errors = self.cache.validate(
            graphql_core_schema(context.schema), context.graphql_document
        )
        yield


def cached_documents(cache: DocumentCache) -> Any:
    """An extension factory for ``strawberry.Schema(extensions=[...])``."""
    return lambda: CachedDocuments(cache)
