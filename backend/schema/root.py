"""The schema: roots merged from each domain's Query, Mutation and Subscription, and extensions."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable, Iterable
from datetime import UTC, datetime
from typing import Any

import strawberry
from graphql import GraphQLError, get_operation_ast
from graphql import execute as graphql_execute
from graphql.execution.middleware import MiddlewareManager
from strawberry.exceptions import MissingQueryError
from strawberry.extensions import (
    DisableIntrospection,
    MaxAliasesLimiter,
    QueryDepthLimiter,
    SchemaExtension,
)
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.tools import merge_types
from strawberry.types import ExecutionContext, ExecutionResult
from strawberry.types.graphql import OperationType

from backend.config import Settings
from backend.errors import HeraldError
from backend.errors import ValidationError as HeraldValidationError
from backend.frameworks.strawberry_internals import (
    DEFAULT_ALLOWED_OPERATION_TYPES,
    await_maybe,
    execute_kwargs,
    graphql_core_schema,
    log_errors,
)
from backend.observability import metrics
from backend.resolvers import (
    api_keys,
    audit,
    campaigns,
    dead_letters,
    deliveries,
    event_types,
    events,
    inbox,
    limits,
    preferences,
    providers,
    recipients,
    retention,
    stats,
    suppressions,
    templates,
    tenants,
    topics,
    webhooks,
    workflows,
)
from backend.schema.context import Context
from backend.schema.documents import DocumentCache, cached_documents
from backend.schema.errors import ERROR_TYPES, HeraldMaskErrors
from backend.schema.plans import OperationPlans, Replay, Unsupported

_NO_MIDDLEWARE = MiddlewareManager()


def _as_graphql_error(error: Exception) -> GraphQLError:
    if isinstance(error, GraphQLError):
        return error
    return GraphQLError(str(error), original_error=error)


@strawberry.type(description="The caller, as the access token describes them.")
class Viewer:
    id: strawberry.ID
    roles: list[str]
    token_expires_at: datetime | None
    tenant_id: str | None = strawberry.field(
        default=None,
        description="The tenant the caller is bound to (it sees only its data); null: none.",
    )


@strawberry.type(description="A keep-alive tick on a subscription.")
class Heartbeat:
    at: datetime


@strawberry.type
class ViewerQuery:
    @strawberry.field(description="The caller, from the bearer token.")
    def viewer(self, info: strawberry.Info[Context, None]) -> Viewer:
        principal = info.context.principal()
        return Viewer(
            id=strawberry.ID(principal.user_id),
            roles=sorted(principal.roles),
            token_expires_at=principal.expires_at,
            tenant_id=principal.tenant_id,
        )


@strawberry.type
class HeartbeatSubscription:
    @strawberry.subscription(
        description="A tick every `intervalSeconds` (1 to 300), to keep a socket alive."
    )
    async def heartbeat(
        self, info: strawberry.Info[Context, None], interval_seconds: int = 30
    ) -> AsyncGenerator[Heartbeat, None]:
        info.context.principal()
        if not 1 <= interval_seconds <= 300:
            raise HeraldValidationError("intervalSeconds is 1 to 300", field="intervalSeconds")
        interval = interval_seconds
        metrics.subscription_opened()
        try:
            while True:
                yield Heartbeat(at=datetime.now(UTC))
                await asyncio.sleep(interval)
        finally:
            metrics.subscription_closed()


# Each domain declares its own root fields (backend/resolvers/<domain>.py); the order here is
# the order of the fields in the published schema (Strawberry lists a class's method fields
# after its attribute fields, so `viewer`, once declared first as a method, was always last).
Query = merge_types(
    "Query",
    (
        templates.Query,
        event_types.Query,
        deliveries.Query,
        events.Query,
        dead_letters.Query,
        audit.Query,
        inbox.Query,
        limits.Query,
        campaigns.Query,
        topics.Query,
        preferences.Query,
        recipients.Query,
        webhooks.Query,
        providers.Query,
        stats.Query,
        api_keys.Query,
        workflows.Query,
        suppressions.Query,
        tenants.Query,
        ViewerQuery,
    ),
)
Mutation = merge_types(
    "Mutation",
    (
        events.Mutation,
        event_types.Mutation,
        dead_letters.Mutation,
        inbox.Mutation,
        preferences.Mutation,
        recipients.Mutation,
        templates.Mutation,
        limits.Mutation,
        campaigns.Mutation,
        topics.Mutation,
        webhooks.Mutation,
        retention.Mutation,
        api_keys.Mutation,
        workflows.Mutation,
        suppressions.Mutation,
        tenants.Mutation,
        templates.PreviewMutation,
    ),
)
Subscription = merge_types("Subscription", (inbox.Subscription, HeartbeatSubscription))


class HeraldSchema(strawberry.Schema):
    """Logs unexpected errors with their trace; expected ones (auth, validation) are data.

    :meth:`execute` runs graphql-core's executor as Strawberry does, without Strawberry's
    per-operation extension machinery: Herald's two extensions (the document cache and error
    masking) are applied directly, which took a tenth of a sendEvent's time. An operation
    with a compiled plan (backend/schema/plans.py: one root field read for leaves, as
    ``sendEvent``) skips the executor's machinery around its resolver as well.
    """

    # The parsed and validated documents, shared with the WebSocket fast path.
    documents: DocumentCache
    # The masking step applied to every result (HeraldMaskErrors), when build_schema made
    # the schema with exactly Herald's extensions; None runs Strawberry's own execute.
    masking: HeraldMaskErrors | None = None
    # Compiled plans for the operations that have one (build_schema, when masking is set and
    # HERALD_GRAPHQL_PLANS is on); None runs every operation on the executor.
    plans: OperationPlans | None = None

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        unexpected = [
            e
            for e in errors
            if e.original_error is not None
            and not isinstance(e.original_error, GraphQLError | HeraldError)
        ]
        if unexpected:
            super().process_errors(unexpected, execution_context)

    async def execute(
        self,
        query: str | None,
        variable_values: dict[str, Any] | None = None,
        context_value: Any | None = None,
        root_value: Any | None = None,
        operation_name: str | None = None,
        allowed_operation_types: Iterable[OperationType] | None = None,
        operation_extensions: dict[str, Any] | None = None,
    ) -> ExecutionResult:
        """What ``strawberry.Schema.execute`` returns and raises, for Herald's extensions.

        The same steps in the same order: parse (cached), pick the operation (raising
        CannotGetOperationTypeError, InvalidOperationTypeError, MissingQueryError as Strawberry
        does), validate (cached), graphql-core's ``execute`` with Strawberry's executor class
        and arguments, ``process_errors``, then masking. tests/test_schema_execute.py compares
        it with Strawberry's own execute.

        Written against strawberry-graphql 0.341's ``Schema.execute``, ``_execute_operation``
        and ``_prepare_operation_async``, whose private helpers it reaches through
        backend/frameworks/strawberry_internals.py (``execute_kwargs``, ``log_errors``).
        """
        masking = self.masking
        if masking is None:
            return await super().execute(
                query,
                variable_values,
                context_value,
                root_value,
                operation_name,
                allowed_operation_types,
                operation_extensions,
            )
        if allowed_operation_types is None:
            allowed_operation_types = DEFAULT_ALLOWED_OPERATION_TYPES
        if not query:
            raise MissingQueryError
        context = ExecutionContext(
            query=query,
            schema=self,
            allowed_operations=allowed_operation_types,
            context=context_value,
            root_value=root_value,
            variables=variable_values,
            provided_operation_name=operation_name,
            operation_extensions=operation_extensions,
        )
        try:
            document, errors = self.documents.checked(graphql_core_schema(self), query)
        except Exception as error:  # a syntax error, or too many tokens
            return self._finish(context, None, [_as_graphql_error(error)], masking)
        context.graphql_document = document
        try:
            operation_type = context.operation_type
        except RuntimeError as error:
            raise CannotGetOperationTypeError(context.operation_name) from error
        if operation_type not in context.allowed_operations:
            raise InvalidOperationTypeError(operation_type)
        try:
            if errors:
                return self._finish(context, None, list(errors), masking)
            middleware = _NO_MIDDLEWARE
            if self.plans is not None:
                try:
                    data = await self._planned(
                        query, document, context, variable_values, root_value, operation_extensions
                    )
                    if data is not None:
                        return self._finish(context, data, None, masking)
                except Replay as replay:  # the resolver ran: the executor completes its result
                    middleware = MiddlewareManager(replay)
            result = await await_maybe(
                graphql_execute(
                    graphql_core_schema(self),
                    context.graphql_document,
                    root_value=root_value,
                    middleware=middleware,
                    variable_values=variable_values,
                    operation_name=context.operation_name,
                    context_value=context_value,
                    **execute_kwargs(self, operation_extensions),
                )
            )
        except Exception as error:
            return self._finish(context, None, [_as_graphql_error(error)], masking)
        return self._finish(context, result.data, result.errors, masking)

    async def _planned(
        self,
        query: str,
        document: Any,
        context: ExecutionContext,
        variable_values: dict[str, Any] | None,
        root_value: Any,
        operation_extensions: dict[str, Any] | None,
    ) -> dict[str, Any] | None:
        """The operation's data from its compiled plan; None when it has no plan, or when
        the executor must run it from the start (its variables do not coerce, say: nothing
        ran). Raises Replay once the root resolver has run and the executor must complete."""
        assert self.plans is not None
        operation_name = context.operation_name
        operation = get_operation_ast(document, operation_name)
        if operation is None:
            return None
        plan = self.plans.get(query, operation_name, document, operation)
        if plan is None:
            return None
        kwargs = execute_kwargs(self, operation_extensions)
        executor_class = kwargs.pop("executor_class", None)
        if executor_class is None:  # Strawberry always names its own; plans build with it
            return None
        # graphql-core's own build step, as its execute takes it: the operation, its
        # fragments and its variables coerced (a list of errors when they do not).
        executor = executor_class.build(
            graphql_core_schema(self),
            document,
            root_value,
            context.context,
            variable_values,
            operation_name,
            middleware=_NO_MIDDLEWARE,
            **kwargs,
        )
        if isinstance(executor, list):
            return None
        try:
            return await plan.run(executor, root_value)
        except Unsupported:
            return None

    def _finish(
        self,
        context: ExecutionContext,
        data: dict[str, Any] | None,
        errors: list[GraphQLError] | None,
        masking: HeraldMaskErrors,
    ) -> ExecutionResult:
        if errors:
            # Logged before masking, as Strawberry does: the trace of what the client
            # only sees as "Unexpected error."
            context.pre_execution_errors = errors
            log_errors(self, errors, context)
            errors = masking.mask(errors)
        result = ExecutionResult(data=data, errors=errors or None, extensions={})
        context.result = result
        return result


def build_schema(settings: Settings | None = None) -> HeraldSchema:
    """The schema with Herald's limits. ``settings`` None gives the committed, documented schema."""
    # Factories, so that every operation gets fresh extension instances. Documents are parsed
    # and validated once per distinct text (backend/schema/documents.py), with the limits'
    # rules built once here: a rule class made per request would never hit the cache.
    extensions: list[Callable[[], SchemaExtension] | type[SchemaExtension]] = [HeraldMaskErrors]
    rules: list[Any] = []
    max_tokens = max_expanded_fields = 100_000
    if settings is not None:
        max_tokens = settings.max_tokens
        max_expanded_fields = settings.max_expanded_fields
        rules += [
            *QueryDepthLimiter(max_depth=settings.max_query_depth).validation_rules,
            *MaxAliasesLimiter(max_alias_count=settings.max_aliases).validation_rules,
        ]
        if not settings.introspection:
            rules += DisableIntrospection().validation_rules
    documents = DocumentCache(
        max_tokens=max_tokens, max_expanded_fields=max_expanded_fields, rules=rules
    )
    extensions.append(cached_documents(documents))
    schema = HeraldSchema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        types=ERROR_TYPES,
        extensions=extensions,
    )
    schema.documents = documents
    if not schema.directives and not schema.config.enable_experimental_incremental_execution:
        schema.masking = HeraldMaskErrors()
        if settings is None or settings.graphql_plans:
            schema.plans = OperationPlans(graphql_core_schema(schema))
    return schema
