"""crm contacts, sealed checkpoints, one active run

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "crm_contacts",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("workspace_id", sa.String(length=64), nullable=False),
        sa.Column("connection_id", sa.Uuid(), nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("external_id", sa.String(length=255), nullable=False),
        sa.Column("display_name", sa.String(length=512), nullable=True),
        sa.Column("given_name", sa.String(length=255), nullable=True),
        sa.Column("family_name", sa.String(length=255), nullable=True),
        sa.Column("emails", sa.JSON(), nullable=False),
        sa.Column("phones", sa.JSON(), nullable=False),
        sa.Column("organization", sa.String(length=512), nullable=True),
        sa.Column("job_title", sa.String(length=512), nullable=True),
        sa.Column("primary_email", sa.String(length=320), nullable=True),
        sa.Column("full_pass_id", sa.String(length=36), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["connection_id"],
            ["connections.id"],
            name=op.f("fk_crm_contacts_connection_id_connections"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_crm_contacts")),
        sa.UniqueConstraint("connection_id", "external_id", name=op.f("uq_crm_contacts_connection_id")),
    )
    with op.batch_alter_table("crm_contacts", schema=None) as batch_op:
        batch_op.create_index("ix_crm_contacts_workspace_id", ["workspace_id", "id"], unique=False)

    op.create_table(
        "crm_contact_emails",
        sa.Column("contact_id", sa.Uuid(), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("workspace_id", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["contact_id"],
            ["crm_contacts.id"],
            name=op.f("fk_crm_contact_emails_contact_id_crm_contacts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("contact_id", "email", name=op.f("pk_crm_contact_emails")),
    )
    with op.batch_alter_table("crm_contact_emails", schema=None) as batch_op:
        batch_op.create_index("ix_crm_contact_emails_workspace_email", ["workspace_id", "email"], unique=False)

    # Plaintext cursors are dropped rather than sealed here: the next sync of each stream is a full pass,
    # which is idempotent, so nothing is lost.
    op.execute("DELETE FROM checkpoints")
    with op.batch_alter_table("checkpoints", schema=None) as batch_op:
        batch_op.add_column(sa.Column("key_id", sa.SmallInteger(), nullable=False))
        batch_op.add_column(sa.Column("sealed", sa.LargeBinary(), nullable=False))
        batch_op.drop_column("cursor")

    with op.batch_alter_table("sync_runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("records_seen", sa.Integer(), nullable=False, server_default="0"))
        batch_op.create_index(
            "uq_sync_runs_one_active",
            ["connection_id", "capability"],
            unique=True,
            postgresql_where=sa.text("status IN ('queued', 'running', 'waiting')"),
        )


def downgrade() -> None:
    with op.batch_alter_table("sync_runs", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_sync_runs_one_active",
            postgresql_where=sa.text("status IN ('queued', 'running', 'waiting')"),
        )
        batch_op.drop_column("records_seen")

    op.execute("DELETE FROM checkpoints")
    with op.batch_alter_table("checkpoints", schema=None) as batch_op:
        batch_op.add_column(sa.Column("cursor", sa.JSON(), nullable=False))
        batch_op.drop_column("sealed")
        batch_op.drop_column("key_id")

    with op.batch_alter_table("crm_contact_emails", schema=None) as batch_op:
        batch_op.drop_index("ix_crm_contact_emails_workspace_email")

    op.drop_table("crm_contact_emails")
    with op.batch_alter_table("crm_contacts", schema=None) as batch_op:
        batch_op.drop_index("ix_crm_contacts_workspace_id")

    op.drop_table("crm_contacts")
