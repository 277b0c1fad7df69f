"""the in-app inbox: items with a per-user sequence

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "inbox_counters",
        sa.Column("user_id", sa.String(200), primary_key=True),
        sa.Column("seq", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "inbox_items",
        sa.Column("delivery_id", sa.String(64), primary_key=True),
        sa.Column("user_id", sa.String(200), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("event_id", sa.String(64), nullable=False),
        sa.Column("event_type", sa.String(100), nullable=False),
        sa.Column("title", sa.Text()),
        sa.Column("body", sa.Text()),
        sa.Column("data", postgresql.JSONB(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"),
                  nullable=False),
        sa.Column("read_at", sa.DateTime(timezone=True)),
        sa.Column("archived_at", sa.DateTime(timezone=True)),
        sa.UniqueConstraint("user_id", "seq", name=op.f("uq_inbox_items_user_id")),
    )
    # Unread count and the unread-only listing read this partial index.
    op.create_index(
        "ix_inbox_items_unread",
        "inbox_items",
        ["user_id", "seq"],
        postgresql_where=sa.text("read_at IS NULL AND archived_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_inbox_items_unread", table_name="inbox_items")
    op.drop_table("inbox_items")
    op.drop_table("inbox_counters")
