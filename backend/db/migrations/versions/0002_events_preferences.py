"""built-in event types and their templates, preferences, push subscriptions, scheduled events,
dead letters

Revision ID: 0002
Revises: 0001
"""

import uuid

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TEMPLATES = [
    {
        "slug": "welcome",
        "name": "Welcome",
        "description": "Sent when a user registers.",
        "content": [
            {
                "channel": "email",
                "locale": "en",
                "subject": "Welcome to Herald, {{ user.first_name }}!",
                "body": "Hello {{ user.first_name }},\n\nthanks for joining us.",
                "html": "<p>Hello {{ user.first_name }},</p><p>thanks for joining us.</p>",
            },
            {
                "channel": "in_app",
                "locale": "en",
                "title": "Welcome, {{ user.first_name }}!",
                "body": "Your account is ready.",
            },
            {
                "channel": "email",
                "locale": "pt",
                "subject": "Bem-vindo, {{ user.first_name }}!",
                "body": "Olá {{ user.first_name }},\n\nobrigado por se juntar a nós.",
            },
        ],
    },
    {
        "slug": "movie_added",
        "name": "New movie",
        "description": "Announces a movie added to the catalogue.",
        "content": [
            {
                "channel": "email",
                "locale": "en",
                "subject": "New on the catalogue: {{ payload.movie.title }}",
                "body": "{{ payload.movie.title }} is now available: {{ payload.movie.url }}",
                "html": '<p><a href="{{ payload.movie.url }}">{{ payload.movie.title }}</a>'
                " is now available.</p>",
            },
            {
                "channel": "in_app",
                "locale": "en",
                "title": "New movie: {{ payload.movie.title }}",
                "body": "Watch it now.",
            },
            {
                "channel": "push",
                "locale": "en",
                "title": "New movie: {{ payload.movie.title }}",
                "body": "Tap to watch.",
            },
        ],
    },
    {
        "slug": "password_reset",
        "name": "Password reset",
        "description": "The link to reset a password.",
        "content": [
            {
                "channel": "email",
                "locale": "en",
                "subject": "Reset your password",
                "body": "Hello {{ user.first_name }}, reset your password here: "
                "{{ payload.reset_url }}",
            }
        ],
    },
]

EVENT_TYPES = [
    {
        "name": "user_registered",
        "description": "A user registered; welcome them.",
        "template_slug": "welcome",
        "channels": ["email", "in_app"],
        "critical": False,
        "payload_schema": {"type": "object"},
    },
    {
        "name": "movie_added",
        "description": "A movie was added to the catalogue.",
        "template_slug": "movie_added",
        "channels": ["in_app", "push", "email"],
        "critical": False,
        "payload_schema": {
            "type": "object",
            "required": ["movie"],
            "properties": {
                "movie": {
                    "type": "object",
                    "required": ["title", "url"],
                    "properties": {
                        "title": {"type": "string", "minLength": 1},
                        "url": {"type": "string", "minLength": 1},
                        "year": {"type": "integer"},
                    },
                }
            },
        },
    },
    {
        "name": "password_reset",
        "description": "A password reset was requested. Critical: ignores opt-outs.",
        "template_slug": "password_reset",
        "channels": ["email"],
        "critical": True,
        "payload_schema": {
            "type": "object",
            "required": ["reset_url"],
            "properties": {
                "reset_url": {"type": "string", "minLength": 1},
                "expires_in_minutes": {"type": "integer", "minimum": 1},
            },
        },
    },
]


def upgrade() -> None:
    op.create_table(
        "user_preferences",
        sa.Column("user_id", sa.String(200), primary_key=True),
        sa.Column("disabled_channels", postgresql.ARRAY(sa.String(20)), nullable=False),
        sa.Column("disabled_event_types", postgresql.ARRAY(sa.String(100)), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"),
                  nullable=False),
    )
    op.create_table(
        "push_subscriptions",
        sa.Column("id", sa.UUID(), primary_key=True),
        sa.Column("user_id", sa.String(200), nullable=False),
        sa.Column("endpoint", sa.Text(), nullable=False),
        sa.Column("p256dh", sa.String(200), nullable=False),
        sa.Column("auth", sa.String(100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"),
                  nullable=False),
        sa.UniqueConstraint("endpoint", name=op.f("uq_push_subscriptions_endpoint")),
    )
    op.create_index(op.f("ix_push_subscriptions_user_id"), "push_subscriptions", ["user_id"])
    op.create_table(
        "scheduled_events",
        sa.Column("id", sa.UUID(), primary_key=True),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("envelope", postgresql.JSONB(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"),
                  nullable=False),
    )
    op.create_index(op.f("ix_scheduled_events_due_at"), "scheduled_events", ["due_at"])
    op.create_table(
        "dead_letters",
        sa.Column("delivery_id", sa.String(64), primary_key=True),
        sa.Column("event_id", sa.String(64), nullable=False),
        sa.Column("event_type", sa.String(100), nullable=False),
        sa.Column("user_id", sa.String(200), nullable=False),
        sa.Column("channel", sa.String(20), nullable=False),
        sa.Column("envelope", postgresql.JSONB(), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"),
                  nullable=False),
    )
    op.create_index(op.f("ix_dead_letters_event_id"), "dead_letters", ["event_id"])
    op.create_index(op.f("ix_dead_letters_created_at"), "dead_letters", ["created_at"])

    templates = sa.table(
        "templates",
        sa.column("id", sa.UUID()),
        sa.column("slug", sa.String()),
        sa.column("name", sa.String()),
        sa.column("description", sa.Text()),
        sa.column("content", postgresql.JSONB()),
        sa.column("version", sa.Integer()),
        sa.column("created_by", sa.String()),
        sa.column("updated_by", sa.String()),
    )
    versions = sa.table(
        "template_versions",
        sa.column("id", sa.UUID()),
        sa.column("template_id", sa.UUID()),
        sa.column("version", sa.Integer()),
        sa.column("name", sa.String()),
        sa.column("description", sa.Text()),
        sa.column("content", postgresql.JSONB()),
        sa.column("created_by", sa.String()),
    )
    for t in TEMPLATES:
        template_id = uuid.uuid4()
        op.bulk_insert(templates, [{"id": template_id, "version": 1, "created_by": "herald",
                                    "updated_by": "herald", **t}])
        op.bulk_insert(versions, [{"id": uuid.uuid4(), "template_id": template_id, "version": 1,
                                   "name": t["name"], "description": t["description"],
                                   "content": t["content"], "created_by": "herald"}])
    event_types = sa.table(
        "event_types",
        sa.column("name", sa.String()),
        sa.column("description", sa.Text()),
        sa.column("payload_schema", postgresql.JSONB()),
        sa.column("template_slug", sa.String()),
        sa.column("channels", postgresql.ARRAY(sa.String())),
        sa.column("critical", sa.Boolean()),
        sa.column("builtin", sa.Boolean()),
    )
    op.bulk_insert(event_types, [{**e, "builtin": True} for e in EVENT_TYPES])


def downgrade() -> None:
    op.execute("DELETE FROM event_types WHERE builtin")
    op.execute(
        "DELETE FROM templates WHERE slug IN ('welcome', 'movie_added', 'password_reset')"
    )
    op.drop_table("dead_letters")
    op.drop_table("scheduled_events")
    op.drop_table("push_subscriptions")
    op.drop_table("user_preferences")
