"""Query, mutation and subscription roots, and the schema with its extensions."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable
from datetime import UTC, datetime

import strawberry
from graphql import GraphQLError
from strawberry.extensions import (
    DisableIntrospection,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    ParserCache,
    QueryDepthLimiter,
    SchemaExtension,
    ValidationCache,
)
from strawberry.types import ExecutionContext

from backend.config import Settings
from backend.errors import HeraldError
from backend.resolvers import templates as template_resolvers
from backend.schema.context import Context
from backend.schema.errors import (
    ConflictError,
    ForbiddenError,
    HeraldMaskErrors,
    NotFoundError,
    TemplateRenderError,
    TemplateSyntaxError,
    UnauthenticatedError,
    UnavailableError,
    ValidationError,
)
from backend.schema.templates import (
    DeleteTemplateResult,
    PreviewTemplateResult,
    Template,
    TemplateConnection,
    TemplateResult,
)


@strawberry.type(description="The caller, as the access token describes them.")
class Viewer:
    id: strawberry.ID
    roles: list[str]
    token_expires_at: datetime | None


@strawberry.type(description="A keep-alive tick on a subscription.")
class Heartbeat:
    at: datetime


@strawberry.type
class Query:
    @strawberry.field(description="The caller, from the bearer token.")
    def viewer(self, info: strawberry.Info[Context, None]) -> Viewer:
        principal = info.context.principal()
        return Viewer(
            id=strawberry.ID(principal.user_id),
            roles=sorted(principal.roles),
            token_expires_at=principal.expires_at,
        )

    templates: TemplateConnection = strawberry.field(
        resolver=template_resolvers.templates,
        description="Templates ordered by slug; `search` matches slug or name. Managers only.",
    )
    template: Template | None = strawberry.field(
        resolver=template_resolvers.template,
        description="One template by slug, or null. Managers only.",
    )


@strawberry.type
class Mutation:
    create_template: TemplateResult = strawberry.field(
        resolver=template_resolvers.create_template,
        description="Create a template (version 1). Template syntax is checked on save.",
    )
    update_template: TemplateResult = strawberry.field(
        resolver=template_resolvers.update_template,
        description="Change a template; the previous version stays in `versions`.",
    )
    restore_template_version: TemplateResult = strawberry.field(
        resolver=template_resolvers.restore_template_version,
        description="Make an old version current again, as a new version.",
    )
    delete_template: DeleteTemplateResult = strawberry.field(
        resolver=template_resolvers.delete_template,
        description="Delete a template and its versions; refused while something uses it.",
    )
    preview_template: PreviewTemplateResult = strawberry.field(
        resolver=template_resolvers.preview_template,
        description=(
            "Render a saved template (`slug`) or unsaved `content` for one channel and locale. "
            "`variables` holds `payload`, and optionally `user` and `event`; sample values fill "
            "what is left out."
        ),
    )


@strawberry.type
class Subscription:
    @strawberry.subscription(description="A tick every `intervalSeconds`, to keep a socket alive.")
    async def heartbeat(
        self, info: strawberry.Info[Context, None], interval_seconds: int = 30
    ) -> AsyncGenerator[Heartbeat, None]:
        info.context.principal()
        interval = min(max(interval_seconds, 1), 300)
        while True:
            yield Heartbeat(at=datetime.now(UTC))
            await asyncio.sleep(interval)


class HeraldSchema(strawberry.Schema):
    """Logs unexpected errors with their trace; expected ones (auth, validation) are data."""

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


# Error types reached only through unions are listed so that every one is in the schema.
EXTRA_TYPES = [
    ConflictError,
    ForbiddenError,
    NotFoundError,
    TemplateRenderError,
    TemplateSyntaxError,
    UnauthenticatedError,
    UnavailableError,
    ValidationError,
]


def build_schema(settings: Settings | None = None) -> strawberry.Schema:
    """The schema with Herald's limits. ``settings`` None gives the committed, documented schema."""
    # Factories, so that every operation gets fresh extension instances. The parser and
    # validation caches are shared module-level LRU caches inside the extensions.
    extensions: list[Callable[[], SchemaExtension] | type[SchemaExtension]] = [
        lambda: ParserCache(maxsize=1024),
        lambda: ValidationCache(maxsize=1024),
        HeraldMaskErrors,
    ]
    if settings is not None:
        max_tokens, max_depth = settings.max_tokens, settings.max_query_depth
        max_aliases = settings.max_aliases
        extensions += [
            lambda: MaxTokensLimiter(max_token_count=max_tokens),
            lambda: QueryDepthLimiter(max_depth=max_depth),
            lambda: MaxAliasesLimiter(max_alias_count=max_aliases),
        ]
        if not settings.introspection:
            extensions.append(DisableIntrospection)
    return HeraldSchema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        types=EXTRA_TYPES,
        extensions=extensions,
    )
