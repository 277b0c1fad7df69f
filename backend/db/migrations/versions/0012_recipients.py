"""recipients: profiles Herald keeps per user id, their channel addresses, and sync jobs

Revision ID: 0012
Revises: 0011

The browsers' Web Push subscriptions move from ``push_subscriptions`` into
``recipient_addresses`` (kind ``WEB_PUSH``, keyed by the endpoint): each user who had one gets a
recipient row with no profile yet (``source`` = address), fetched from the auth service on first
use. Downgrading copies the active ones back.
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

# Each user with a push subscription gets a recipient (its profile fetched on first use), and
# each subscription becomes an active WEB_PUSH address keyed by its endpoint.
RECIPIENTS_OF_SUBSCRIPTIONS = (
    "INSERT INTO recipients (user_id, source) "
    "SELECT DISTINCT user_id, 'address' FROM push_subscriptions ON CONFLICT DO NOTHING"
)
ADDRESSES_OF_SUBSCRIPTIONS = (
    "INSERT INTO recipient_addresses (id, user_id, kind, key, value, created_at) "
    "SELECT id, user_id, 'WEB_PUSH', endpoint, "
    "jsonb_build_object('endpoint', endpoint, 'p256dh', p256dh, 'auth', auth), created_at "
    "FROM push_subscriptions"
)


def upgrade() -> None:
    op.create_table(
        "recipients",
        sa.Column("user_id", sa.String(200), nullable=False),
        sa.Column("email", sa.String(320), nullable=True),
        sa.Column("first_name", sa.String(200), server_default="", nullable=False),
        sa.Column("last_name", sa.String(200), server_default="", nullable=False),
        sa.Column("login", sa.String(200), server_default="", nullable=False),
        sa.Column("phone", sa.String(32), nullable=True),
        sa.Column("locale", sa.String(35), nullable=True),
        sa.Column("timezone", sa.String(64), nullable=True),
        sa.Column(
            "custom",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("source", sa.String(20), nullable=False),
        sa.Column("refreshed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_recipients")),
    )
    op.create_table(
        "recipient_addresses",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("user_id", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("provider", sa.String(40), nullable=True),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("value", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("state", sa.String(10), server_default="ACTIVE", nullable=False),
        sa.Column("disabled_reason", sa.Text(), nullable=True),
        sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["recipients.user_id"],
            name=op.f("fk_recipient_addresses_user_id_recipients"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_recipient_addresses")),
        sa.UniqueConstraint("user_id", "kind", "key", name="uq_recipient_addresses_user_kind_key"),
    )
    op.create_index("ix_recipient_addresses_kind_key", "recipient_addresses", ["kind", "key"])
    op.create_table(
        "recipient_syncs",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("pages_done", sa.Integer(), server_default="0", nullable=False),
        sa.Column("recipients_synced", sa.Integer(), server_default="0", nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("requested_by", sa.String(200), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_recipient_syncs")),
    )
    op.execute(RECIPIENTS_OF_SUBSCRIPTIONS)
    op.execute(ADDRESSES_OF_SUBSCRIPTIONS)
    op.drop_table("push_subscriptions")


def downgrade() -> None:
    op.create_table(
        "push_subscriptions",
        sa.Column("id", sa.UUID(), primary_key=True),
        sa.Column("user_id", sa.String(200), nullable=False),
        sa.Column("endpoint", sa.Text(), nullable=False),
        sa.Column("p256dh", sa.String(200), nullable=False),
        sa.Column("auth", sa.String(100), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.UniqueConstraint("endpoint", name=op.f("uq_push_subscriptions_endpoint")),
    )
    op.create_index(op.f("ix_push_subscriptions_user_id"), "push_subscriptions", ["user_id"])
    op.execute(
        "INSERT INTO push_subscriptions (id, user_id, endpoint, p256dh, auth, created_at) "
        "SELECT DISTINCT ON (key) id, user_id, key, value->>'p256dh', value->>'auth', created_at "
        "FROM recipient_addresses WHERE kind = 'WEB_PUSH' AND state = 'ACTIVE' "
        "ORDER BY key, created_at DESC"
    )
    op.drop_table("recipient_syncs")
    op.drop_table("recipient_addresses")
    op.drop_table("recipients")
