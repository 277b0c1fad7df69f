"""throttles per event type, delivery budgets per channel, digests

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("event_types", sa.Column("throttle_limit", sa.Integer()))
    op.add_column("event_types", sa.Column("throttle_window_seconds", sa.Integer()))
    op.create_table(
        "delivery_budgets",
        sa.Column("channel", sa.String(20), primary_key=True),
        sa.Column("max_deliveries", sa.Integer(), nullable=False),
        sa.Column("window_seconds", sa.Integer(), nullable=False),
        sa.Column("updated_by", sa.String(200)),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    )


    op.add_column("event_types", sa.Column("digest", postgresql.JSONB()))
    op.add_column(
        "user_preferences",
        sa.Column(
            "digest_cadence",
            postgresql.JSONB(),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
    )
    op.create_table(
        "digest_items",
        sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True),
        sa.Column("event_type", sa.String(100), nullable=False),
        sa.Column("user_id", sa.String(200), nullable=False),
        sa.Column("digest_key", sa.String(200), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("event_id", sa.String(64), nullable=False),
        sa.Column("envelope", postgresql.JSONB(), nullable=False),
        sa.Column("payload", postgresql.JSONB(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("event_id", "user_id", name="uq_digest_items_event_user"),
    )
    op.create_index("ix_digest_items_due_at", "digest_items", ["due_at"])


def downgrade() -> None:
    op.drop_table("digest_items")
    op.drop_column("user_preferences", "digest_cadence")
    op.drop_column("event_types", "digest")
    op.drop_table("delivery_budgets")
    op.drop_column("event_types", "throttle_window_seconds")
    op.drop_column("event_types", "throttle_limit")
