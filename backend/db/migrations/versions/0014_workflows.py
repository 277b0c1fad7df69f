"""workflows: an event type's steps, versioned, and the durable runs that go through them

Revision ID: 0014
Revises: 0013

``workflows`` holds every version of an event type's workflow (one current, by a partial unique
index); ``workflow_runs`` one event for one user going through one version, with its cursor,
context and due time while it waits; ``workflow_run_steps`` each step of a run, keyed by (run,
step path) so that a step is claimed, and runs, once.

Every existing event type becomes a single-step workflow, version 1: one ``send`` step on the
type's channels with its template. Such a workflow is what the type did before, and dispatch
sends its events the way it always has (``backend.services.workflows.is_plain``).
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "workflows",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("event_type", sa.String(100), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("steps", postgresql.JSONB(), nullable=False),
        sa.Column(
            "cancels", postgresql.ARRAY(sa.String(100)), nullable=False, server_default="{}"
        ),
        sa.Column("is_current", sa.Boolean(), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column("created_by", sa.String(200), nullable=True),
        sa.ForeignKeyConstraint(
            ["event_type"],
            ["event_types.name"],
            name="fk_workflows_event_type_event_types",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_workflows"),
        sa.UniqueConstraint("event_type", "version", name="uq_workflows_event_type"),
    )
    op.create_index(
        "uq_workflows_current",
        "workflows",
        ["event_type"],
        unique=True,
        postgresql_where=sa.text("is_current"),
    )
    op.create_table(
        "workflow_runs",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("workflow_id", sa.UUID(), nullable=False),
        sa.Column("event_type", sa.String(100), nullable=False),
        sa.Column("event_id", sa.String(64), nullable=False),
        sa.Column("user_id", sa.String(200), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("cancel_key", sa.String(200), nullable=True),
        sa.Column("cursor", sa.String(200), nullable=True),
        sa.Column("context", postgresql.JSONB(), nullable=False),
        sa.Column("envelope", postgresql.JSONB(), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("leased_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["workflow_id"],
            ["workflows.id"],
            name="fk_workflow_runs_workflow_id_workflows",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_workflow_runs"),
    )
    op.create_index(
        "ix_workflow_runs_due",
        "workflow_runs",
        ["due_at"],
        postgresql_where=sa.text("status = 'waiting'"),
    )
    op.create_index("ix_workflow_runs_cancel_key", "workflow_runs", ["cancel_key"])
    op.create_index(
        "ix_workflow_runs_type_user", "workflow_runs", ["event_type", "user_id", "status"]
    )
    op.create_index("ix_workflow_runs_created", "workflow_runs", ["created_at", "id"])
    op.create_index("ix_workflow_runs_event_id", "workflow_runs", ["event_id"])
    op.create_table(
        "workflow_run_steps",
        sa.Column("run_id", sa.UUID(), nullable=False),
        sa.Column("path", sa.String(200), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("outcome", postgresql.JSONB(), nullable=False, server_default="{}"),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="1"),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["workflow_runs.id"],
            name="fk_workflow_run_steps_run_id_workflow_runs",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("run_id", "path", name="pk_workflow_run_steps"),
    )
    # Every event type as it is: one send step on its channels with its template.
    op.execute(
        """
        INSERT INTO workflows (id, event_type, version, steps, cancels, is_current, created_by)
        SELECT gen_random_uuid(), name, 1,
               jsonb_build_array(jsonb_build_object(
                   'type', 'send', 'name', 'send',
                   'channels', to_jsonb(channels), 'template', template_slug)),
               '{}', true, 'herald'
        FROM event_types
        WHERE template_slug IS NOT NULL AND cardinality(channels) > 0
        """
    )


def downgrade() -> None:
    op.drop_table("workflow_run_steps")
    op.drop_index("ix_workflow_runs_event_id", table_name="workflow_runs")
    op.drop_index("ix_workflow_runs_created", table_name="workflow_runs")
    op.drop_index("ix_workflow_runs_type_user", table_name="workflow_runs")
    op.drop_index("ix_workflow_runs_cancel_key", table_name="workflow_runs")
    op.drop_index("ix_workflow_runs_due", table_name="workflow_runs")
    op.drop_table("workflow_runs")
    op.drop_index("uq_workflows_current", table_name="workflows")
    op.drop_table("workflows")
