"""tenants: one install serving several products or customers

Revision ID: 0019
Revises: 0018

A ``tenants`` table (id, name, branding), and a nullable ``tenant_id`` on what a tenant owns:
templates (a slug is unique among the shared templates and within each tenant, so a tenant may
override a shared template), campaigns, API keys (a key bound to a tenant), inbox items and
deliveries. Rows stored before have no tenant: a single-product install is unchanged.
"""

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

# Tables whose rows a tenant owns through a foreign key (a tenant is not deleted under them).
_OWNED = ("templates", "campaigns", "api_keys")


def upgrade() -> None:
    op.create_table(
        "tenants",
        sa.Column("id", sa.String(length=63), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("logo_url", sa.Text(), nullable=True),
        sa.Column("primary_color", sa.String(length=7), nullable=True),
        sa.Column("created_by", sa.String(length=200), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tenants")),
    )
    for table in _OWNED:
        op.add_column(table, sa.Column("tenant_id", sa.String(length=63), nullable=True))
        op.create_foreign_key(
            op.f(f"fk_{table}_tenant_id_tenants"),
            table,
            "tenants",
            ["tenant_id"],
            ["id"],
            ondelete="RESTRICT",
        )
        op.create_index(op.f(f"ix_{table}_tenant_id"), table, ["tenant_id"])
    # One shared template per slug, and one override per (slug, tenant).
    op.drop_constraint("uq_templates_slug", "templates", type_="unique")
    op.create_index(
        "uq_templates_slug_shared",
        "templates",
        ["slug"],
        unique=True,
        postgresql_where=sa.text("tenant_id IS NULL"),
    )
    op.create_index(
        "uq_templates_slug_tenant",
        "templates",
        ["slug", "tenant_id"],
        unique=True,
        postgresql_where=sa.text("tenant_id IS NOT NULL"),
    )
    op.add_column("inbox_items", sa.Column("tenant_id", sa.String(length=63), nullable=True))
    op.add_column("deliveries", sa.Column("tenant_id", sa.Text(collation="C"), nullable=True))
    op.create_index(
        "ix_deliveries_tenant_id_created_at",
        "deliveries",
        ["tenant_id", sa.text("created_at DESC"), sa.text("id DESC")],
        postgresql_where=sa.text("tenant_id IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_deliveries_tenant_id_created_at", table_name="deliveries")
    op.drop_column("deliveries", "tenant_id")
    op.drop_column("inbox_items", "tenant_id")
    op.drop_index("uq_templates_slug_tenant", table_name="templates")
    op.drop_index("uq_templates_slug_shared", table_name="templates")
    # Overrides cannot survive a single slug namespace.
    op.execute("DELETE FROM templates WHERE tenant_id IS NOT NULL")
    op.create_unique_constraint("uq_templates_slug", "templates", ["slug"])
    for table in reversed(_OWNED):
        op.drop_index(op.f(f"ix_{table}_tenant_id"), table_name=table)
        op.drop_constraint(op.f(f"fk_{table}_tenant_id_tenants"), table, type_="foreignkey")
        op.drop_column(table, "tenant_id")
    op.drop_table("tenants")
