"""crm_leads: leads from lead forms, one row per connection that brought each in, with provenance

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "crm_leads",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("workspace_id", sa.String(length=64), nullable=False),
        sa.Column("connection_id", sa.Uuid(), nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("resource", sa.String(length=36), server_default="", nullable=False),
        sa.Column("external_id", sa.String(length=255), nullable=False),
        sa.Column("page_id", sa.String(length=64), nullable=False),
        sa.Column("form_id", sa.String(length=64), nullable=True),
        sa.Column("ad_id", sa.String(length=64), nullable=True),
        sa.Column("campaign_id", sa.String(length=64), nullable=True),
        sa.Column("is_organic", sa.Boolean(), nullable=True),
        sa.Column("platform", sa.String(length=32), nullable=True),
        sa.Column("lead_created_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("email", sa.Text(), nullable=True),
        sa.Column("phone", sa.Text(), nullable=True),
        sa.Column("phone_e164", sa.String(length=32), nullable=True),
        sa.Column("full_name", sa.Text(), nullable=True),
        sa.Column("first_name", sa.Text(), nullable=True),
        sa.Column("last_name", sa.Text(), nullable=True),
        sa.Column("answers", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("full_pass_id", sa.String(length=36), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["connection_id"],
            ["connections.id"],
            name=op.f("fk_crm_leads_connection_id_connections"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_crm_leads")),
        sa.UniqueConstraint("connection_id", "resource", "external_id", name=op.f("uq_crm_leads_connection_id")),
    )
    op.create_index("ix_crm_leads_workspace_id", "crm_leads", ["workspace_id", "id"], unique=False)
    op.create_index("ix_crm_leads_workspace_external_id", "crm_leads", ["workspace_id", "external_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_crm_leads_workspace_external_id", table_name="crm_leads")
    op.drop_index("ix_crm_leads_workspace_id", table_name="crm_leads")
    op.drop_table("crm_leads")
