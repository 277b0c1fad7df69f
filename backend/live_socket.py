"""The ``graphql-transport-ws`` handler, with a fast path for ``notifications``.

Strawberry runs the protocol: ``connection_init`` and its timeout, ping/pong, the close codes,
the cap on subscriptions per connection. Most operations run through it unchanged.

A ``notifications`` subscription is what thousands of client apps hold open at once, so it
takes a shorter road. Its document is parsed and validated once, like any other, then compiled
into a *plan*: for each item type (Notification, ReadStateChange), the response keys with the
attribute each one reads and the GraphQL type's own serializer. Each item is then projected
straight into its ``next`` message, without running graphql-core's executor. That costs a small
fraction of the CPU per item, and an idle subscription holds one task with a few frames
instead of the executor's chain of async generators.

Only documents a plan can answer exactly take this road: fields without arguments or
directives, leaf types, ``__typename``, inline fragments and fragment spreads (the selections
are compiled by backend/schema/plans.py, which also answers plain queries and mutations over
HTTP). Anything else (``@skip``, a variable of another type, an invalid document) goes through
Strawberry, and so does a subscription refused before it starts (a bad token, a bad cursor, too
many subscriptions), so every error reads the same on either road. Tests check that both roads
give the same messages for the same items.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import orjson
from graphql import (
    FieldNode,
    GraphQLError,
    GraphQLSchema,
    NonNullTypeNode,
    NullValueNode,
    OperationType,
    StringValueNode,
    VariableNode,
    get_operation_ast,
)
from strawberry.http.exceptions import WebSocketDisconnected
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
    Operation,
)

from backend.errors import HeraldError
from backend.resolvers.inbox import close_socket, open_inbox_stream
from backend.schema.context import Context
from backend.schema.documents import DocumentCache, operation_problem
from backend.schema.errors import HeraldMaskErrors
from backend.schema.inbox import Notification
from backend.schema.plans import Leaf, SelectionCompiler, Unsupported, fragment_definitions
from backend.services.inbox import InboxEntry
from backend.services.live import InboxStream, ReadChange

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class NotificationsPlan:
    """A compiled ``subscription { notifications(since: ...) { ... } }``."""

    key: str  # the field's response key (its alias, or "notifications")
    since_literal: str | None
    since_variable: str | None
    since_default: str | None
    notification: tuple[Leaf, ...]
    read_change: tuple[Leaf, ...]

    def since(self, variables: dict[str, Any] | None) -> str | None:
        if self.since_variable is None:
            return self.since_literal
        if variables is not None and self.since_variable in variables:
            value = variables[self.since_variable]
            if value is not None and not isinstance(value, str):
                raise Unsupported  # graphql-core reports the coercion error
            return value
        return self.since_default

    def project(self, update: InboxEntry | ReadChange) -> dict[str, Any]:
        if isinstance(update, InboxEntry):
            source: Any = Notification.from_entry(update)
            leaves = self.notification
        else:
            source, leaves = update, self.read_change
        return {key: value(source) for key, value in leaves}

    def result(self, update: InboxEntry | ReadChange) -> dict[str, Any]:
        """The ``next`` message's payload for one item: what graphql-core's executor gives for
        the subscription with the item as its event (tests/test_differential.py checks it)."""
        return {"data": {self.key: self.project(update)}}


def compile_notifications(
    schema: GraphQLSchema, documents: DocumentCache, query: str, operation_name: str | None
) -> NotificationsPlan | None:
    """A plan for a valid ``notifications`` subscription, or None (Strawberry runs it)."""
    try:
        document = documents.parse(query)
    except GraphQLError:
        return None
    if documents.validate(schema, document):
        return None
    operation = get_operation_ast(document, operation_name)
    if (
        operation is None
        or operation.operation != OperationType.SUBSCRIPTION
        or operation.directives
        or len(operation.selection_set.selections) != 1
    ):
        return None
    root = operation.selection_set.selections[0]
    if not isinstance(root, FieldNode) or root.name.value != "notifications" or root.directives:
        return None
    since_literal = since_variable = since_default = None
    for argument in root.arguments or ():
        value = argument.value
        if isinstance(value, StringValueNode):
            since_literal = value.value
        elif isinstance(value, VariableNode):
            since_variable = value.name.value
            definition = next(
                d
                for d in operation.variable_definitions or ()
                if d.variable.name.value == since_variable
            )
            if isinstance(definition.type, NonNullTypeNode) or not (
                definition.default_value is None
                or isinstance(definition.default_value, StringValueNode | NullValueNode)
            ):
                return None
            if isinstance(definition.default_value, StringValueNode):
                since_default = definition.default_value.value
        elif not isinstance(value, NullValueNode):
            return None
    compiler = SelectionCompiler(schema, fragment_definitions(document))
    assert root.selection_set is not None  # validated: a union needs a selection
    try:
        return NotificationsPlan(
            key=root.alias.value if root.alias else "notifications",
            since_literal=since_literal,
            since_variable=since_variable,
            since_default=since_default,
            notification=compiler.leaves(root.selection_set, "Notification"),
            read_change=compiler.leaves(root.selection_set, "ReadStateChange"),
        )
    except Unsupported:
        return None


class NotificationPlans:
    """Plans by (document, operation name), bounded; None is remembered too (the same
    ``lru_cache`` as the documents' own cache, backend/schema/documents.py)."""

    def __init__(self, schema: GraphQLSchema, documents: DocumentCache, maxsize: int = 256):
        self.schema = schema
        self.documents = documents
        self.get = lru_cache(maxsize=maxsize)(self._compile)

    def _compile(self, query: str, operation_name: str | None) -> NotificationsPlan | None:
        return compile_notifications(self.schema, self.documents, query, operation_name)


def _error_payload(exc: Exception) -> list[Any]:
    """The error as Strawberry would give it: Herald's own with its code, others masked."""
    error = GraphQLError(str(exc), original_error=exc)
    return [e.formatted for e in HeraldMaskErrors().mask([error])]


def subscribe_problem(message: dict[str, Any]) -> str | None:
    """What makes a ``subscribe`` message malformed (the protocol closes with 4400), or None."""
    message_id = message.get("id")
    if not isinstance(message_id, str) or not message_id:
        return "A subscribe message needs an 'id' string"
    payload = message.get("payload")
    if not isinstance(payload, dict):
        return "A subscribe message's 'payload' must be an object"
    if not isinstance(payload.get("query"), str):
        return "'query' must be a string"
    for name, kind in (("variables", dict), ("extensions", dict), ("operationName", str)):
        if payload.get(name) is not None and not isinstance(payload[name], kind):
            what = "an object" if kind is dict else "a string"
            return f"'{name}' must be {what}"
    return None


class LiveSocketHandler(BaseGraphQLTransportWSHandler[Context, None]):
    """Strawberry's protocol handler; ``notifications`` takes the fast path.

    Messages are checked before Strawberry reads them: a frame that is not a message object, or a
    ``subscribe`` whose payload has the wrong shape, closes the socket with 4400 as the protocol
    says (unchecked, Strawberry's handler raised and dropped the connection, or never answered).
    A document that does not parse, or whose operation cannot be picked, gets an ``error``
    message for its id, like any other document that cannot run, and the socket stays open.
    """

    async def handle_message(self, message: Any) -> None:
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            await self.handle_invalid_message("A message must be an object with a 'type'")
            return
        if message["type"] == "subscribe" and (problem := subscribe_problem(message)):
            await self.handle_invalid_message(problem)
            return
        await super().handle_message(message)  # type: ignore[arg-type]

    async def run_operation(self, operation: Operation[Context, None]) -> None:
        documents: DocumentCache = self.view.schema.documents  # type: ignore[attr-defined]
        try:
            document = documents.parse(operation.query)
            problem = operation_problem(document, operation.operation_name)
            if problem is not None:
                raise GraphQLError(problem)
        except GraphQLError as refused:
            await operation.send_initial_errors([refused])
            return
        plans: NotificationPlans | None = getattr(self.view, "plans", None)
        plan = plans.get(operation.query, operation.operation_name) if plans else None
        if plan is None:
            return await super().run_operation(operation)
        try:
            since = plan.since(operation.variables)
            stream = await open_inbox_stream(self.context, since)
        except (Unsupported, HeraldError):
            # Refused before it started: Strawberry runs it again and reports the error as
            # it reports every other one.
            return await super().run_operation(operation)
        try:
            await self._stream(operation, plan, stream)
        except WebSocketDisconnected:
            pass
        except Exception as exc:
            if not isinstance(exc, HeraldError):
                log.exception("notifications stream failed")
            with contextlib.suppress(Exception):
                error: Any = {"id": operation.id, "type": "error", "payload": _error_payload(exc)}
                await operation.send_operation_message(error)
        finally:
            await stream.aclose()

    async def _stream(
        self, operation: Operation[Context, None], plan: NotificationsPlan, stream: InboxStream
    ) -> None:
        result, op_id = plan.result, operation.id
        send: Any = operation.send_operation_message  # the protocol's messages, as plain dicts
        close = functools.partial(close_socket, self.context)
        async with contextlib.aclosing(stream.updates(close)) as updates:
            async for update in updates:
                await send({"id": op_id, "type": "next", "payload": result(update)})
        # The stream ends only when the socket was closed under it (token expired, too slow).
        with contextlib.suppress(Exception):
            await send({"id": op_id, "type": "complete"})


def encode_json(data: object) -> str:
    """Messages as compact JSON text (a text frame, as the protocol requires)."""
    return orjson.dumps(data).decode()
