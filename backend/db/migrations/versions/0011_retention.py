"""an index on inbox_items.created_at for the retention sweep

Revision ID: 0011
Revises: 0010

The sweep deletes inbox items older than HERALD_INBOX_RETENTION_DAYS in batches; without this
index each batch would scan the whole table. (The deliveries table already has
ix_deliveries_created_at.)
"""

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_inbox_items_created_at", "inbox_items", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_inbox_items_created_at", table_name="inbox_items")
