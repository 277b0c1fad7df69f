"""The schema: roots merged from each domain's Query, Mutation and Subscription, and extensions."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable
from datetime import UTC, datetime
from typing import Any

import strawberry
from graphql import GraphQLError
from strawberry.extensions import (
    DisableIntrospection,
    MaxAliasesLimiter,
    QueryDepthLimiter,
    SchemaExtension,
)
from strawberry.tools import merge_types
from strawberry.types import ExecutionContext

from backend.config import Settings
from backend.errors import HeraldError
from backend.errors import ValidationError as HeraldValidationError
from backend.observability import metrics
from backend.resolvers import (
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
    templates,
    topics,
    webhooks,
)
from backend.schema.context import Context
from backend.schema.documents import DocumentCache, cached_documents
from backend.schema.errors import ERROR_TYPES, HeraldMaskErrors


@strawberry.type(description="The caller, as the access token describes them.")
class Viewer:
    id: strawberry.ID
    roles: list[str]
    token_expires_at: datetime | None


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
        templates.PreviewMutation,
    ),
)
Subscription = merge_types("Subscription", (inbox.Subscription, HeartbeatSubscription))


class HeraldSchema(strawberry.Schema):
    """Logs unexpected errors with their trace; expected ones (auth, validation) are data."""

    # The parsed and validated documents, shared with the WebSocket fast path.
    documents: DocumentCache

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
    return schema
