"""PostgreSQL tables (SQLAlchemy 2 declarative). Relationships are ``lazy="raise"``."""

from __future__ import annotations

import uuid
from datetime import datetime, time
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    Time,
    UniqueConstraint,
    false,
    func,
    literal_column,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {dict[str, Any]: JSONB, list[dict[str, Any]]: JSONB}


class TimestampMixin:
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False
    )
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now(), nullable=False
    )


class Tenant(Base):
    """A product or customer Herald sends for, in an install that serves several: its data
    (templates, events and their deliveries, inbox items, campaigns, preferences) carries its
    id, and callers bound to it see only that. Its branding is given to templates as ``tenant``."""

    __tablename__ = "tenants"

    id: Mapped[str] = mapped_column(String(63), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    logo_url: Mapped[str | None] = mapped_column(Text)
    primary_color: Mapped[str | None] = mapped_column(String(7))
    created_by: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False
    )
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False
    )


class Template(TimestampMixin, Base):
    """A message template: per-channel, per-locale content. Every change is a new version.

    A slug names one shared template (``tenant_id`` null) and at most one override per tenant:
    rendering for a tenant takes its override, else the shared one."""

    __tablename__ = "templates"
    __table_args__ = (
        Index(
            "uq_templates_slug_shared",
            "slug",
            unique=True,
            postgresql_where=text("tenant_id IS NULL"),
        ),
        Index(
            "uq_templates_slug_tenant",
            "slug",
            "tenant_id",
            unique=True,
            postgresql_where=text("tenant_id IS NOT NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    slug: Mapped[str] = mapped_column(String(100), nullable=False)
    # The tenant that owns it (backend.services.tenants); null: shared, or no tenants in use.
    tenant_id: Mapped[str | None] = mapped_column(
        String(63), ForeignKey("tenants.id", ondelete="RESTRICT"), index=True
    )
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    description: Mapped[str] = mapped_column(Text, nullable=False, default="")
    content: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, nullable=False, default=list)
    version: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    created_by: Mapped[str | None] = mapped_column(String(200))
    updated_by: Mapped[str | None] = mapped_column(String(200))

    versions: Mapped[list[TemplateVersion]] = relationship(
        back_populates="template", lazy="raise", cascade="all, delete-orphan", passive_deletes=True
    )


class TemplateVersion(Base):
    """A snapshot of a template as it was at one version (the current one included)."""

    __tablename__ = "template_versions"
    __table_args__ = (UniqueConstraint("template_id", "version"),)

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    template_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("templates.id", ondelete="CASCADE"), nullable=False, index=True
    )
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    description: Mapped[str] = mapped_column(Text, nullable=False, default="")
    content: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, nullable=False)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False
    )
    created_by: Mapped[str | None] = mapped_column(String(200))

    template: Mapped[Template] = relationship(back_populates="versions", lazy="raise")


class EventType(TimestampMixin, Base):
    """An event type and its rule: which template goes out on which channels."""

    __tablename__ = "event_types"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    description: Mapped[str] = mapped_column(Text, nullable=False, default="")
    payload_schema: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    template_slug: Mapped[str | None] = mapped_column(String(100), index=True)
    channels: Mapped[list[str]] = mapped_column(ARRAY(String(20)), nullable=False, default=list)
    critical: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    builtin: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    # At most throttle_limit messages of this type per user per window; the rest are skipped.
    throttle_limit: Mapped[int | None] = mapped_column(Integer)
    throttle_window_seconds: Mapped[int | None] = mapped_column(Integer)
    # {"every_seconds": N} or {"cron": "0 9 * * *"} (in each user's time zone), with an
    # optional "key" (a payload path that splits digests) and "template_slug".
    digest: Mapped[dict[str, Any] | None] = mapped_column(JSONB)


class DigestItem(Base):
    """An event collected for a user's next digest of its type (and key)."""

    __tablename__ = "digest_items"
    __table_args__ = (UniqueConstraint("event_id", "user_id", name="uq_digest_items_event_user"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    event_type: Mapped[str] = mapped_column(String(100), nullable=False)
    user_id: Mapped[str] = mapped_column(String(200), nullable=False)
    digest_key: Mapped[str] = mapped_column(String(200), nullable=False)
    due_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, index=True)
    event_id: Mapped[str] = mapped_column(String(64), nullable=False)
    envelope: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


class DeliveryBudget(Base):
    """At most ``max_deliveries`` non-critical deliveries per user on a channel per window,
    whatever the event type or campaign: the user's budget across all traffic."""

    __tablename__ = "delivery_budgets"

    channel: Mapped[str] = mapped_column(String(20), primary_key=True)
    max_deliveries: Mapped[int] = mapped_column(Integer, nullable=False)
    window_seconds: Mapped[int] = mapped_column(Integer, nullable=False)
    updated_by: Mapped[str | None] = mapped_column(String(200))
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False
    )


class UserPreferences(Base):
    """A user's opt-outs. Critical event types ignore them."""

    __tablename__ = "user_preferences"

    user_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    # "": the user's own preferences, everywhere. A tenant's id: the opt-outs (channels, event
    # types, topics) the user made within that tenant, added to their own for its events.
    tenant_id: Mapped[str] = mapped_column(
        String(63), primary_key=True, default="", server_default=text("''")
    )
    disabled_channels: Mapped[list[str]] = mapped_column(
        ARRAY(String(20)), nullable=False, default=list
    )
    disabled_event_types: Mapped[list[str]] = mapped_column(
        ARRAY(String(100)), nullable=False, default=list
    )
    # Topics the user opted out of: a delivery that reached them only through these is skipped.
    disabled_topics: Mapped[list[str]] = mapped_column(
        ARRAY(String(100)), nullable=False, default=list, server_default=text("'{}'")
    )
    # Quiet hours, in the user's time zone: non-critical deliveries wait until they end.
    quiet_start: Mapped[time | None] = mapped_column(Time)
    quiet_end: Mapped[time | None] = mapped_column(Time)
    timezone: Mapped[str | None] = mapped_column(String(64))
    # Event type -> instant | hourly | daily | weekly: the user's own digest cadence.
    digest_cadence: Mapped[dict[str, Any]] = mapped_column(
        JSONB, nullable=False, default=dict, server_default=text("'{}'::jsonb")
    )
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now(), nullable=False
    )


class RecipientRow(Base):
    """What Herald knows of a user: the auth service's profile fields (filled on first use,
    refreshed after ``HERALD_RECIPIENT_MAX_AGE_SECONDS``, or imported by a sync) or those a
    service identified, and the addresses Herald owns (``RecipientAddress``)."""

    __tablename__ = "recipients"
    # recipients(search:) matches these anywhere (ILIKE '%term%'): trigram indexes (0013).
    __table_args__ = (
        Index(
            "ix_recipients_user_id_trgm",
            "user_id",
            postgresql_using="gin",
            postgresql_ops={"user_id": "gin_trgm_ops"},
        ),
        Index(
            "ix_recipients_email_trgm",
            "email",
            postgresql_using="gin",
            postgresql_ops={"email": "gin_trgm_ops"},
        ),
        Index(
            "ix_recipients_name_trgm",
            # As PostgreSQL prints it back, so the schema comparison sees one index.
            literal_column("((first_name::text || ' '::text) || last_name::text)").label(
                "full_name"
            ),
            postgresql_using="gin",
            postgresql_ops={"full_name": "gin_trgm_ops"},
        ),
    )

    user_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    email: Mapped[str | None] = mapped_column(String(320))
    first_name: Mapped[str] = mapped_column(String(200), nullable=False, server_default="")
    last_name: Mapped[str] = mapped_column(String(200), nullable=False, server_default="")
    login: Mapped[str] = mapped_column(String(200), nullable=False, server_default="")
    phone: Mapped[str | None] = mapped_column(String(32))
    locale: Mapped[str | None] = mapped_column(String(35))
    timezone: Mapped[str | None] = mapped_column(String(64))
    custom: Mapped[dict[str, Any]] = mapped_column(
        JSONB, nullable=False, default=dict, server_default=text("'{}'::jsonb")
    )
    # auth (the auth service), identify (a service's identifyRecipient) or address (only an
    # address is known yet: the profile is fetched on first use).
    source: Mapped[str] = mapped_column(String(20), nullable=False)
    # When the profile fields last came from their source; null: never (fetched on first use).
    refreshed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False
    )
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now(), nullable=False
    )


class RecipientAddress(Base):
    """A channel address Herald owns for a user: a browser's Web Push subscription, a mobile
    device token, a chat id. ``key`` identifies it within its kind (the push endpoint, the
    token, the chat id); ``value`` holds what sending needs. A provider that reports it gone
    (a 410 from a push service) disables it with the reason rather than deleting it."""

    __tablename__ = "recipient_addresses"
    __table_args__ = (
        UniqueConstraint("user_id", "kind", "key", name="uq_recipient_addresses_user_kind_key"),
        Index("ix_recipient_addresses_kind_key", "kind", "key"),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    user_id: Mapped[str] = mapped_column(
        String(200), ForeignKey("recipients.user_id", ondelete="CASCADE"), nullable=False
    )
    kind: Mapped[str] = mapped_column(String(20), nullable=False)  # WEB_PUSH | MOBILE_PUSH | CHAT
    # ios / android for MOBILE_PUSH, the chat service (slack, telegram...) for CHAT.
    provider: Mapped[str | None] = mapped_column(String(40))
    key: Mapped[str] = mapped_column(Text, nullable=False)
    value: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    state: Mapped[str] = mapped_column(String(10), nullable=False, server_default="ACTIVE")
    disabled_reason: Mapped[str | None] = mapped_column(Text)
    disabled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False
    )
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class RecipientSync(Base):
    """One import of the auth service's user list into ``recipients``, with its progress."""

    __tablename__ = "recipient_syncs"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    # PENDING, RUNNING, SUCCEEDED or FAILED
    status: Mapped[str] = mapped_column(String(20), nullable=False)
    pages_done: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    recipients_synced: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    error: Mapped[str | None] = mapped_column(Text)
    requested_by: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False
    )
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # What resuming needs: the page size the job walks with (a resumed job keeps it), when its
    # runner last committed a page or took the job, which runner holds it, and how many times
    # it was taken over from a runner that died or stalled.
    page_size: Mapped[int | None] = mapped_column(Integer)
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    runner: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    resumes: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")


class ScheduledEvent(Base):
    """An accepted event whose ``sendAt`` is in the future; released to dispatch when due."""

    __tablename__ = "scheduled_events"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    due_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, index=True)
    envelope: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False
    )


class Campaign(Base):
    """A planned send of one template to an audience: now, at a time, or recurring.

    PostgreSQL is the source of truth: ``next_run_at`` is when the next run is due, and the
    RedBeat entry that fires it is derived from this row (and rebuilt from it by ``herald beat``).
    """

    __tablename__ = "campaigns"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    category: Mapped[str] = mapped_column(String(100), nullable=False)
    template_slug: Mapped[str] = mapped_column(String(100), nullable=False)
    channels: Mapped[list[str]] = mapped_column(ARRAY(String(20)), nullable=False)
    audience: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, default=dict)
    locale: Mapped[str | None] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20), nullable=False, index=True)
    run_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    cron: Mapped[str | None] = mapped_column(String(100))
    timezone: Mapped[str] = mapped_column(String(64), nullable=False, default="UTC")
    every_seconds: Mapped[int | None] = mapped_column(Integer)
    end_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    max_runs: Mapped[int | None] = mapped_column(Integer)
    # Interval schedules count from here (creation, or the last resume).
    anchor_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    next_run_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    runs_started: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    # The tenant that owns it (backend.services.tenants); null: shared, or no tenants in use.
    tenant_id: Mapped[str | None] = mapped_column(
        String(63), ForeignKey("tenants.id", ondelete="RESTRICT"), index=True
    )
    created_by: Mapped[str | None] = mapped_column(String(200))
    updated_by: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False, index=True
    )
    # Set by the service on every change (no onupdate: a refresh after commit is avoided).
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False
    )


class CampaignRun(Base):
    """One run of a campaign, keyed by (campaign, scheduled time): a run is started once,
    whoever fires it and however often. Its audience is fanned out one page per task."""

    __tablename__ = "campaign_runs"
    __table_args__ = (
        UniqueConstraint("campaign_id", "scheduled_for", name="uq_campaign_runs_slot"),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    campaign_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("campaigns.id", ondelete="CASCADE"), nullable=False
    )
    scheduled_for: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    # The run's deliveries belong to this event id (delivery ids derive from it).
    event_id: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    kind: Mapped[str] = mapped_column(String(20), nullable=False)  # scheduled | manual | test
    test_user_id: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(20), nullable=False, index=True)
    next_page: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    cursor: Mapped[str | None] = mapped_column(String(200))
    recipients: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    started_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False
    )
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False
    )


class DeadLetter(Base):
    """A delivery that failed for good, with what is needed to replay it."""

    __tablename__ = "dead_letters"

    delivery_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    event_type: Mapped[str] = mapped_column(String(100), nullable=False)
    user_id: Mapped[str] = mapped_column(String(200), nullable=False)
    channel: Mapped[str] = mapped_column(String(20), nullable=False)
    envelope: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    error: Mapped[str] = mapped_column(Text, nullable=False)
    attempts: Mapped[int] = mapped_column(Integer, nullable=False)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False, index=True
    )


class InboxCounter(Base):
    """The last inbox sequence number given to a user. Taking the next numbers locks this row
    until the items are committed, so a user's items commit in sequence order: a client that
    has seen item N can trust that nothing below N will appear later (gap-free resume)."""

    __tablename__ = "inbox_counters"

    user_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)


class InboxItem(Base):
    """An in-app notification in a user's inbox."""

    __tablename__ = "inbox_items"
    # created_at: the retention sweep deletes the oldest items in batches.
    __table_args__ = (
        UniqueConstraint("user_id", "seq"),
        Index("ix_inbox_items_created_at", "created_at"),
    )

    delivery_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(200), nullable=False)
    seq: Mapped[int] = mapped_column(BigInteger, nullable=False)
    event_id: Mapped[str] = mapped_column(String(64), nullable=False)
    event_type: Mapped[str] = mapped_column(String(100), nullable=False)
    title: Mapped[str | None] = mapped_column(Text)
    body: Mapped[str | None] = mapped_column(Text)
    data: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, default=dict)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False
    )
    # The template's rendered actions: [{label, url} | {label, name}], at most two.
    actions: Mapped[list[dict[str, str]]] = mapped_column(
        JSONB, nullable=False, default=list, server_default=text("'[]'::jsonb")
    )
    read_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    archived_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The tenant of the event that made it: a caller bound to a tenant sees only its items.
    # No foreign key: items are written on the delivery hot path, and a tenant with data
    # cannot be deleted anyway (its templates and events name it first).
    tenant_id: Mapped[str | None] = mapped_column(String(63))


class WebhookEndpoint(Base):
    """An admin-registered URL that receives delivery status changes, signed with ``secret``
    (``whsec_<base64 key>``, Standard Webhooks). Empty ``event_types`` / ``statuses`` mean every
    one; ``engagements`` (``opened``, ``clicked``) are the email engagements it also gets, empty
    meaning none. ``legacy_signature`` adds the deprecated ``Herald-Signature`` header."""

    __tablename__ = "webhook_endpoints"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    url: Mapped[str] = mapped_column(Text, nullable=False)
    secret: Mapped[str] = mapped_column(Text, nullable=False)
    legacy_signature: Mapped[bool] = mapped_column(
        Boolean, nullable=False, default=False, server_default=false()
    )
    description: Mapped[str] = mapped_column(Text, nullable=False, default="")
    event_types: Mapped[list[str]] = mapped_column(ARRAY(String(100)), nullable=False, default=list)
    statuses: Mapped[list[str]] = mapped_column(ARRAY(String(20)), nullable=False, default=list)
    engagements: Mapped[list[str]] = mapped_column(
        ARRAY(String(20)), nullable=False, default=list, server_default=text("'{}'")
    )
    active: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    created_by: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False
    )
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now(), nullable=False
    )


class WebhookDelivery(Base):
    """One POST of one batch of status changes to one endpoint: every attempt is a row."""

    __tablename__ = "webhook_deliveries"
    # The log is read per endpoint, newest first.
    __table_args__ = (Index("ix_webhook_deliveries_endpoint_recent", "endpoint_id", "created_at"),)

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    endpoint_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True),
        ForeignKey("webhook_endpoints.id", ondelete="CASCADE"),
        nullable=False,
    )
    message_id: Mapped[str] = mapped_column(String(64), nullable=False)  # same for each retry
    attempt: Mapped[int] = mapped_column(Integer, nullable=False)
    succeeded: Mapped[bool] = mapped_column(Boolean, nullable=False)
    response_status: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    duration_ms: Mapped[int] = mapped_column(Integer, nullable=False)
    update_count: Mapped[int] = mapped_column(Integer, nullable=False)
    next_retry_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False
    )


class AuditEntry(Base):
    """One admin or manager mutation: who, which operation, a summary of its arguments (no
    secrets, no message bodies), how it ended, and when. Written in the mutation's own
    transaction when it succeeds, in a transaction of its own when it fails."""

    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_log_actor_id", "actor", "id"),
        Index("ix_audit_log_operation_id", "operation", "id"),
        Index("ix_audit_log_at", "at"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=False), primary_key=True)
    at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False
    )
    actor: Mapped[str] = mapped_column(String(200), nullable=False)
    actor_roles: Mapped[list[str]] = mapped_column(ARRAY(String(50)), nullable=False)
    operation: Mapped[str] = mapped_column(String(100), nullable=False)
    arguments: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, default=dict)
    outcome: Mapped[str] = mapped_column(String(30), nullable=False)  # "ok" or an error code
    error: Mapped[str | None] = mapped_column(Text)


class Topic(Base):
    """A named group of users that events and campaigns can target (``audience: {topics}``)."""

    __tablename__ = "topics"

    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    description: Mapped[str] = mapped_column(Text, nullable=False, default="", server_default="")
    # Users may join and leave it themselves (subscribeTopic / unsubscribeTopic).
    self_service: Mapped[bool] = mapped_column(
        Boolean, nullable=False, default=False, server_default=false()
    )
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False
    )
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False
    )


class TopicMember(Base):
    """One user in one topic."""

    __tablename__ = "topic_members"

    topic_key: Mapped[str] = mapped_column(
        ForeignKey("topics.key", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[str] = mapped_column(String(200), primary_key=True, index=True)
    added_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False
    )


class ApiKey(Base):
    """A service's API key. Only the SHA-256 of the key is kept; ``prefix`` (``hk_`` and ten
    characters) finds the row and is shown in lists, the rest is never stored."""

    __tablename__ = "api_keys"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(100), nullable=False)
    prefix: Mapped[str] = mapped_column(String(20), unique=True, nullable=False)
    secret_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    roles: Mapped[list[str]] = mapped_column(ARRAY(String(50)), nullable=False)
    scopes: Mapped[list[str]] = mapped_column(ARRAY(String(50)), nullable=False)
    created_by: Mapped[str] = mapped_column(String(200), nullable=False)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False
    )
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    revoked_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    # The tenant that owns it (backend.services.tenants); null: shared, or no tenants in use.
    tenant_id: Mapped[str | None] = mapped_column(
        String(63), ForeignKey("tenants.id", ondelete="RESTRICT"), index=True
    )


class Workflow(Base):
    """One version of an event type's workflow: its steps (JSON, the shape
    ``backend.services.workflows`` validates) and the event types its events cancel. Every
    save is a new version; exactly one per event type is current (a partial unique index)."""

    __tablename__ = "workflows"
    __table_args__ = (
        UniqueConstraint("event_type", "version"),
        Index(
            "uq_workflows_current",
            "event_type",
            unique=True,
            postgresql_where=text("is_current"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    event_type: Mapped[str] = mapped_column(
        String(100), ForeignKey("event_types.name", ondelete="CASCADE"), nullable=False
    )
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    steps: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, nullable=False)
    cancels: Mapped[list[str]] = mapped_column(
        ARRAY(String(100)), nullable=False, server_default="{}"
    )
    is_current: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
    created_by: Mapped[str | None] = mapped_column(String(200))


class WorkflowRun(Base):
    """One event for one user going through one workflow version. ``cursor`` is the path of
    the next step (``"2.then.0"``; null once finished); ``context`` holds the payload and each
    step's outcome, which later conditions read. ``due_at`` is set while the run waits (a
    delay or a digest window); ``leased_until`` while a worker advances it."""

    __tablename__ = "workflow_runs"
    __table_args__ = (
        Index("ix_workflow_runs_due", "due_at", postgresql_where=text("status = 'waiting'")),
        Index("ix_workflow_runs_cancel_key", "cancel_key"),
        Index("ix_workflow_runs_type_user", "event_type", "user_id", "status"),
        Index("ix_workflow_runs_created", "created_at", "id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    workflow_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("workflows.id", ondelete="CASCADE"), nullable=False
    )
    event_type: Mapped[str] = mapped_column(String(100), nullable=False)
    event_id: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    user_id: Mapped[str] = mapped_column(String(200), nullable=False)
    status: Mapped[str] = mapped_column(String(20), nullable=False)
    cancel_key: Mapped[str | None] = mapped_column(String(200))
    cursor: Mapped[str | None] = mapped_column(String(200))
    context: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    envelope: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    due_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    leased_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class WorkflowRunStep(Base):
    """One step of a run: claimed (``running``) before it acts, so it runs exactly once; its
    outcome is what ``steps.<name>`` shows later conditions."""

    __tablename__ = "workflow_run_steps"

    run_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True),
        ForeignKey("workflow_runs.id", ondelete="CASCADE"),
        primary_key=True,
    )
    path: Mapped[str] = mapped_column(String(200), primary_key=True)
    name: Mapped[str] = mapped_column(String(100), nullable=False)
    kind: Mapped[str] = mapped_column(String(20), nullable=False)
    status: Mapped[str] = mapped_column(String(20), nullable=False)
    outcome: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, server_default="{}")
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, server_default="1")
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class EmailSuppression(Base):
    """An address email is no longer sent to: it bounced for good (``hard_bounce``) or its
    owner reported a message as spam (``complaint``). Removed by an admin or manager."""

    __tablename__ = "email_suppressions"
    __table_args__ = (Index("ix_email_suppressions_created_at", "created_at", "address"),)

    address: Mapped[str] = mapped_column(String(320), primary_key=True)  # lower-cased
    kind: Mapped[str] = mapped_column(String(20), nullable=False)
    provider: Mapped[str] = mapped_column(String(40), nullable=False)
    reason: Mapped[str] = mapped_column(Text, nullable=False)
    delivery_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False
    )
