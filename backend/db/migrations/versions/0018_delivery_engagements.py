"""email open and click tracking: a delivery's engagements

Revision ID: 0018
Revises: 0017

An email delivery keeps the opens and clicks its tracking pixel and links recorded, in order
(``[{"kind": "opened"|"clicked", "at", "url"}]``), next to its status timeline. Deliveries
stored before have none.
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A constant default: PostgreSQL adds the column without rewriting the table.
    op.add_column(
        "deliveries",
        sa.Column(
            "engagements",
            postgresql.JSONB(astext_type=sa.Text()),
            nullable=False,
            server_default=sa.text("'[]'::jsonb"),
        ),
    )


def downgrade() -> None:
    op.drop_column("deliveries", "engagements")
