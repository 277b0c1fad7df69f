"""campaigns, their runs, users' quiet hours and time zone

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "campaigns",
        sa.Column("id", postgresql.UUID(as_uuid=True), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("category", sa.String(100), nullable=False),
        sa.Column("template_slug", sa.String(100), nullable=False),
        sa.Column("channels", postgresql.ARRAY(sa.String(20)), nullable=False),
        sa.Column("audience", postgresql.JSONB(), nullable=False),
        sa.Column("payload", postgresql.JSONB(), nullable=False),
        sa.Column("locale", sa.String(20)),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("run_at", sa.DateTime(timezone=True)),
        sa.Column("cron", sa.String(100)),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("every_seconds", sa.Integer()),
        sa.Column("end_at", sa.DateTime(timezone=True)),
        sa.Column("max_runs", sa.Integer()),
        sa.Column("anchor_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("next_run_at", sa.DateTime(timezone=True)),
        sa.Column("runs_started", sa.Integer(), nullable=False),
        sa.Column("created_by", sa.String(200)),
        sa.Column("updated_by", sa.String(200)),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    )
    op.create_index("ix_campaigns_status", "campaigns", ["status"])
    op.create_index("ix_campaigns_created_at", "campaigns", ["created_at"])
    op.create_table(
        "campaign_runs",
        sa.Column("id", postgresql.UUID(as_uuid=True), primary_key=True),
        sa.Column(
            "campaign_id",
            postgresql.UUID(as_uuid=True),
            sa.ForeignKey("campaigns.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("scheduled_for", sa.DateTime(timezone=True), nullable=False),
        sa.Column("event_id", sa.String(64), nullable=False, unique=True),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("test_user_id", sa.String(200)),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("next_page", sa.Integer(), nullable=False),
        sa.Column("cursor", sa.String(200)),
        sa.Column("recipients", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.UniqueConstraint("campaign_id", "scheduled_for", name="uq_campaign_runs_slot"),
    )
    op.create_index("ix_campaign_runs_status", "campaign_runs", ["status"])
    op.add_column("user_preferences", sa.Column("quiet_start", sa.Time()))
    op.add_column("user_preferences", sa.Column("quiet_end", sa.Time()))
    op.add_column("user_preferences", sa.Column("timezone", sa.String(64)))


def downgrade() -> None:
    op.drop_column("user_preferences", "timezone")
    op.drop_column("user_preferences", "quiet_end")
    op.drop_column("user_preferences", "quiet_start")
    op.drop_table("campaign_runs")
    op.drop_table("campaigns")
