"""topics: named groups of users, their members, and users' per-topic opt-outs

Revision ID: 0010
Revises: 0009

``topics`` are keyed by a slug; ``topic_members`` holds one row per (topic, user), deleted
with its topic. ``user_preferences.disabled_topics`` lists the topics a user opted out of
(deliveries that reached them through those topics only are skipped).
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "topics",
        sa.Column("key", sa.String(100), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False, server_default=""),
        sa.Column("self_service", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.PrimaryKeyConstraint("key", name="pk_topics"),
    )
    op.create_table(
        "topic_members",
        sa.Column("topic_key", sa.String(100), nullable=False),
        sa.Column("user_id", sa.String(200), nullable=False),
        sa.Column(
            "added_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.ForeignKeyConstraint(
            ["topic_key"],
            ["topics.key"],
            name="fk_topic_members_topic_key_topics",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("topic_key", "user_id", name="pk_topic_members"),
    )
    op.create_index("ix_topic_members_user_id", "topic_members", ["user_id"])
    op.add_column(
        "user_preferences",
        sa.Column(
            "disabled_topics",
            postgresql.ARRAY(sa.String(100)),
            nullable=False,
            server_default="{}",
        ),
    )


def downgrade() -> None:
    op.drop_column("user_preferences", "disabled_topics")
    op.drop_index("ix_topic_members_user_id", table_name="topic_members")
    op.drop_table("topic_members")
    op.drop_table("topics")
