"""Query, mutation and subscription roots, and the schema with its extensions."""

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
from strawberry.types import ExecutionContext

from backend.config import Settings
from backend.errors import HeraldError
from backend.errors import ValidationError as HeraldValidationError
from backend.observability import metrics
from backend.resolvers import audit as audit_resolvers
from backend.resolvers import campaigns as campaign_resolvers
from backend.resolvers import events as event_resolvers
from backend.resolvers import inbox as inbox_resolvers
from backend.resolvers import templates as template_resolvers
from backend.resolvers import webhooks as webhook_resolvers
from backend.schema.audit import AuditEntryConnection
from backend.schema.campaigns import (
    Campaign,
    CampaignConnection,
    CampaignResult,
    CampaignRunResult,
)
from backend.schema.context import Context
from backend.schema.documents import DocumentCache, cached_documents
from backend.schema.errors import (
    ConflictError,
    ForbiddenError,
    HeraldMaskErrors,
    NotFoundError,
    RateLimitedError,
    TemplateRenderError,
    TemplateSyntaxError,
    UnauthenticatedError,
    UnavailableError,
    ValidationError,
)
from backend.schema.events import (
    DeadLetterConnection,
    DeliveryBudget,
    DeliveryBudgetResult,
    DeliveryConnection,
    Event,
    EventType,
    EventTypeResult,
    Preferences,
    PreferencesResult,
    PushSubscriptionResult,
    RemoveDeliveryBudgetResult,
    RetryDeadLettersResult,
    SendEventResult,
    SendEventsResult,
)
from backend.schema.inbox import (
    DeliveryUpdate,
    InboxChangeResult,
    InboxUpdate,
    NotificationConnection,
)
from backend.schema.templates import (
    DeleteTemplateResult,
    PreviewTemplateResult,
    Template,
    TemplateConnection,
    TemplateResult,
)
from backend.schema.webhooks import (
    DeleteWebhookEndpointResult,
    ProviderHealth,
    WebhookDeliveryConnection,
    WebhookEndpoint,
    WebhookEndpointResult,
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
    event_types: list[EventType] = strawberry.field(
        resolver=event_resolvers.event_types,
        description="Built-in and registered event types. Managers and services.",
    )
    deliveries: DeliveryConnection = strawberry.field(
        resolver=event_resolvers.deliveries,
        description="Delivery history, newest first, filtered. Managers only.",
    )
    event: Event | None = strawberry.field(
        resolver=event_resolvers.event,
        description=(
            "An event and its deliveries (the first 100); null when `id` is not an event id "
            "(a UUID). Managers only."
        ),
    )
    dead_letters: DeadLetterConnection = strawberry.field(
        resolver=event_resolvers.dead_letters,
        description="Deliveries that failed for good, newest first. Admins only.",
    )
    audit_log: AuditEntryConnection = strawberry.field(
        resolver=audit_resolvers.audit_log,
        description=(
            "Admin and manager mutations (and refused attempts at them), newest first: who, "
            "what, with which arguments (no secrets or message content), how it ended. Admins."
        ),
    )
    inbox: NotificationConnection = strawberry.field(
        resolver=inbox_resolvers.inbox,
        description="Your in-app notifications, newest first (archived ones left out).",
    )
    unread_count: int = strawberry.field(
        resolver=inbox_resolvers.unread_count, description="Your unread, unarchived notifications."
    )
    delivery_budgets: list[DeliveryBudget] = strawberry.field(
        resolver=event_resolvers.delivery_budgets,
        description="Per-user delivery budgets by channel. Managers.",
    )
    campaigns: CampaignConnection = strawberry.field(
        resolver=campaign_resolvers.campaigns,
        description="Campaigns, newest first, by status and name. Managers.",
    )
    campaign: Campaign | None = strawberry.field(
        resolver=campaign_resolvers.campaign,
        description="One campaign with its latest runs and their counts, or null. Managers.",
    )
    preferences: Preferences = strawberry.field(
        resolver=event_resolvers.preferences,
        description="Your notification preferences (admins: anyone's, with `userId`).",
    )
    webhook_endpoints: list[WebhookEndpoint] = strawberry.field(
        resolver=webhook_resolvers.webhook_endpoints,
        description="Registered status webhook endpoints, oldest first. Admins.",
    )
    webhook_deliveries: WebhookDeliveryConnection = strawberry.field(
        resolver=webhook_resolvers.webhook_deliveries,
        description="An endpoint's delivery attempts (one per POST), newest first. Admins.",
    )
    provider_health: list[ProviderHealth] = strawberry.field(
        resolver=webhook_resolvers.provider_health,
        description=(
            "Each provider of the channels with failover, in priority order, with its circuit "
            "breaker as every worker shares it. Admins."
        ),
    )


@strawberry.type
class Mutation:
    send_event: SendEventResult = strawberry.field(
        resolver=event_resolvers.send_event,
        description=(
            "Accept one event for delivery. Accepted means RabbitMQ confirmed it (or, with "
            "`sendAt`, it is stored). Services and admins."
        ),
    )
    send_events: SendEventsResult = strawberry.field(
        resolver=event_resolvers.send_events,
        description="Accept up to 500 events; one result per input, in order.",
    )
    register_event_type: EventTypeResult = strawberry.field(
        resolver=event_resolvers.register_event_type,
        description="Create or change a custom event type and its rule. Managers.",
    )
    retry_dead_letters: RetryDeadLettersResult = strawberry.field(
        resolver=event_resolvers.retry_dead_letters,
        description="Replay dead letters as fresh deliveries. Admins.",
    )
    mark_read: InboxChangeResult = strawberry.field(
        resolver=inbox_resolvers.mark_read,
        description="Mark your notifications read; your other open subscriptions are told.",
    )
    mark_all_read: InboxChangeResult = strawberry.field(
        resolver=inbox_resolvers.mark_all_read, description="Mark all your notifications read."
    )
    archive: InboxChangeResult = strawberry.field(
        resolver=inbox_resolvers.archive, description="Archive your notifications."
    )
    set_preferences: PreferencesResult = strawberry.field(
        resolver=event_resolvers.set_preferences,
        description="Replace your opt-outs (admins: anyone's, with `userId`).",
    )
    register_push_subscription: PushSubscriptionResult = strawberry.field(
        resolver=event_resolvers.register_push_subscription,
        description="Register this browser's Web Push subscription for the caller.",
    )
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
    set_delivery_budget: DeliveryBudgetResult = strawberry.field(
        resolver=event_resolvers.set_delivery_budget,
        description=(
            "Cap non-critical deliveries per user on a channel per window, across every event "
            "type and campaign. Admins."
        ),
    )
    remove_delivery_budget: RemoveDeliveryBudgetResult = strawberry.field(
        resolver=event_resolvers.remove_delivery_budget,
        description="Lift a channel's budget. Admins.",
    )
    create_campaign: CampaignResult = strawberry.field(
        resolver=campaign_resolvers.create_campaign,
        description=(
            "Create a campaign: sent now, at a time, or on a recurring schedule (cron in a time "
            "zone, or every N seconds). `draft: true` saves it unscheduled. Managers."
        ),
    )
    update_campaign: CampaignResult = strawberry.field(
        resolver=campaign_resolvers.update_campaign,
        description="Change a draft, scheduled or paused campaign. Managers.",
    )
    pause_campaign: CampaignResult = strawberry.field(
        resolver=campaign_resolvers.pause_campaign,
        description="Stop firing; a run in progress stops before its next batch. Managers.",
    )
    resume_campaign: CampaignResult = strawberry.field(
        resolver=campaign_resolvers.resume_campaign,
        description=(
            "Start a draft, or continue a paused campaign from where it stopped; missed "
            "recurring times are not made up. Managers."
        ),
    )
    cancel_campaign: CampaignResult = strawberry.field(
        resolver=campaign_resolvers.cancel_campaign,
        description="Stop for good and remove the schedule. Managers.",
    )
    send_campaign_now: CampaignRunResult = strawberry.field(
        resolver=campaign_resolvers.send_campaign_now,
        description=(
            "An extra run now, outside the schedule; with `testUserId`, a test send to that "
            "user only (their opt-outs ignored). Managers."
        ),
    )
    create_webhook_endpoint: WebhookEndpointResult = strawberry.field(
        resolver=webhook_resolvers.create_webhook_endpoint,
        description=(
            "Register an endpoint for delivery status changes (signed POSTs, retried with "
            "backoff). Admins."
        ),
    )
    update_webhook_endpoint: WebhookEndpointResult = strawberry.field(
        resolver=webhook_resolvers.update_webhook_endpoint,
        description="Change an endpoint; fields left out stay as they are. Admins.",
    )
    delete_webhook_endpoint: DeleteWebhookEndpointResult = strawberry.field(
        resolver=webhook_resolvers.delete_webhook_endpoint,
        description="Delete an endpoint and its delivery log. Admins.",
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
    notifications: AsyncGenerator[InboxUpdate, None] = strawberry.subscription(
        resolver=inbox_resolvers.notifications,
        description=(
            "Your in-app notifications, live. With `since` (the cursor of the last item you "
            "saw), missed items come first, in order; then live ones. Read-state changes from "
            "your other devices arrive as ReadStateChange."
        ),
    )
    delivery_updates: AsyncGenerator[DeliveryUpdate, None] = strawberry.subscription(
        resolver=inbox_resolvers.delivery_updates,
        description="Delivery status changes as they happen (managers).",
    )

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


# Error types reached only through unions are listed so that every one is in the schema.
EXTRA_TYPES = [
    ConflictError,
    ForbiddenError,
    NotFoundError,
    RateLimitedError,
    TemplateRenderError,
    TemplateSyntaxError,
    UnauthenticatedError,
    UnavailableError,
    ValidationError,
]


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
        types=EXTRA_TYPES,
        extensions=extensions,
    )
    schema.documents = documents
    return schema
