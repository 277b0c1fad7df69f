"""recipient search indexes (pg_trgm) and resumable recipient syncs

Revision ID: 0013
Revises: 0012

``recipients(search:)`` matches the user id, the email or the name anywhere (ILIKE
``%term%``): a trigram GIN index on each of the three lets PostgreSQL answer it from the
indexes instead of reading every recipient. A sync job gains what resuming it needs: the page
size it walks with, when its runner last committed a page (``heartbeat_at``), who runs it
(``runner``) and how often it was taken over (``resumes``).
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

# (index name, indexed expression): the expressions RecipientRepository.page searches.
SEARCH_INDEXES = (
    ("ix_recipients_user_id_trgm", "user_id"),
    ("ix_recipients_email_trgm", "email"),
    ("ix_recipients_name_trgm", "(first_name || ' ' || last_name)"),
)


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    for name, expression in SEARCH_INDEXES:
        op.execute(f"CREATE INDEX {name} ON recipients USING gin ({expression} gin_trgm_ops)")
    op.add_column("recipient_syncs", sa.Column("page_size", sa.Integer(), nullable=True))
    op.add_column(
        "recipient_syncs", sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.add_column("recipient_syncs", sa.Column("runner", sa.UUID(), nullable=True))
    op.add_column(
        "recipient_syncs",
        sa.Column("resumes", sa.Integer(), server_default="0", nullable=False),
    )


def downgrade() -> None:
    for column in ("resumes", "runner", "heartbeat_at", "page_size"):
        op.drop_column("recipient_syncs", column)
    for name, _ in SEARCH_INDEXES:
        op.drop_index(name, table_name="recipients")
    # The extension stays: other databases' objects may use it, and it costs nothing unused.
