"""webhook engagements: the opens and clicks an endpoint asks for

Revision ID: 0021
Revises: 0020

``webhook_endpoints`` gains ``engagements``: the kinds of email engagement (``opened``,
``clicked``) posted to the endpoint as ``delivery.engaged`` messages. Empty, as every existing
endpoint is: none, so that an endpoint gets only the status changes it was built for until an
admin asks for more.
"""

import sqlalchemy as sa
from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "webhook_endpoints",
        sa.Column(
            "engagements",
            sa.ARRAY(sa.String(length=20)),
            nullable=False,
            server_default=sa.text("'{}'"),
        ),
    )


def downgrade() -> None:
    op.drop_column("webhook_endpoints", "engagements")
