"""email suppressions: addresses that bounced for good or complained

Revision ID: 0017
Revises: 0016

A hard bounce or a spam complaint reported by an email provider (or a delivery status
notification received over SMTP) puts the address here; email to a suppressed address is
skipped until an admin removes it. Addresses are stored lower-cased, one row each.
"""

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "email_suppressions",
        sa.Column("address", sa.String(320), primary_key=True),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("provider", sa.String(40), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("delivery_id", sa.String(64), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.func.now(),
            nullable=False,
        ),
    )
    op.create_index(
        "ix_email_suppressions_created_at", "email_suppressions", ["created_at", "address"]
    )


def downgrade() -> None:
    op.drop_index("ix_email_suppressions_created_at", table_name="email_suppressions")
    op.drop_table("email_suppressions")
