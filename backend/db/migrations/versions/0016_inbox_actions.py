"""in-app actions: the buttons an inbox item carries

Revision ID: 0016
Revises: 0015

An in-app template may give a primary and a secondary action (a label and a URL, or a label
and a name the app handles); each inbox item keeps its rendered actions. Items stored before
have none.
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A constant default: PostgreSQL adds the column without rewriting the table.
    op.add_column(
        "inbox_items",
        sa.Column(
            "actions",
            postgresql.JSONB(astext_type=sa.Text()),
            nullable=False,
            server_default=sa.text("'[]'::jsonb"),
        ),
    )


def downgrade() -> None:
    op.drop_column("inbox_items", "actions")
