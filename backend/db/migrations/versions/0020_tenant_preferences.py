"""tenant preferences: a user's opt-outs within one tenant, on top of their own

Revision ID: 0020
Revises: 0019

``user_preferences`` gains ``tenant_id`` in its key. The row with ``''`` is the user's own, as
before (opt-outs everywhere, quiet hours, time zone, digest cadence); a row with a tenant's id
holds the opt-outs the user made in that tenant only (a product's own settings screen, through
a token bound to it), added to their own for that tenant's events. Existing rows are the
users' own: nothing changes for them.
"""

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "user_preferences",
        sa.Column("tenant_id", sa.String(length=63), nullable=False, server_default=sa.text("''")),
    )
    op.drop_constraint("pk_user_preferences", "user_preferences", type_="primary")
    op.create_primary_key("pk_user_preferences", "user_preferences", ["user_id", "tenant_id"])


def downgrade() -> None:
    op.execute("DELETE FROM user_preferences WHERE tenant_id <> ''")
    op.drop_constraint("pk_user_preferences", "user_preferences", type_="primary")
    op.create_primary_key("pk_user_preferences", "user_preferences", ["user_id"])
    op.drop_column("user_preferences", "tenant_id")
