"""Record provenance: a resource column (a connection_resources id, '' for none) on record tables and full-pass notes

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("crm_contacts", sa.Column("resource", sa.String(length=36), server_default="", nullable=False))
    op.drop_constraint("uq_crm_contacts_connection_id", "crm_contacts", type_="unique")
    op.create_unique_constraint(
        "uq_crm_contacts_connection_id", "crm_contacts", ["connection_id", "resource", "external_id"]
    )
    op.add_column("full_pass_seen", sa.Column("resource", sa.String(length=36), server_default="", nullable=False))


def downgrade() -> None:
    op.drop_column("full_pass_seen", "resource")
    op.drop_constraint("uq_crm_contacts_connection_id", "crm_contacts", type_="unique")
    op.create_unique_constraint("uq_crm_contacts_connection_id", "crm_contacts", ["connection_id", "external_id"])
    op.drop_column("crm_contacts", "resource")
