"""connection_resources; runs, schedules and checkpoints per resource ('' for none, never NULL)

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

ACTIVE = sa.text("status IN ('queued', 'running', 'waiting')")


def upgrade() -> None:
    op.create_table(
        "connection_resources",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("connection_id", sa.Uuid(), nullable=False),
        sa.Column("capability", sa.String(length=64), nullable=False),
        sa.Column("external_id", sa.Text(), nullable=False),
        sa.Column("display_name", sa.Text(), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("selected", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("gone_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["connection_id"],
            ["connections.id"],
            name=op.f("fk_connection_resources_connection_id_connections"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_connection_resources")),
        sa.UniqueConstraint(
            "connection_id", "capability", "external_id", name=op.f("uq_connection_resources_connection_id")
        ),
    )
    op.alter_column(
        "checkpoints",
        "stream",
        existing_type=sa.String(length=64),
        type_=sa.String(length=128),
        existing_nullable=False,
    )

    op.add_column("schedules", sa.Column("resource", sa.String(length=36), server_default="", nullable=False))
    op.drop_constraint(op.f("pk_schedules"), "schedules", type_="primary")
    op.create_primary_key(op.f("pk_schedules"), "schedules", ["connection_id", "capability", "resource"])

    op.add_column("sync_runs", sa.Column("resource", sa.String(length=36), server_default="", nullable=False))
    op.drop_index("ix_sync_runs_connection_capability", table_name="sync_runs")
    op.create_index(
        "ix_sync_runs_connection_capability", "sync_runs", ["connection_id", "capability", "resource", "created_at"]
    )
    op.drop_index("uq_sync_runs_one_active", table_name="sync_runs")
    op.create_index(
        "uq_sync_runs_one_active",
        "sync_runs",
        ["connection_id", "capability", "resource"],
        unique=True,
        postgresql_where=ACTIVE,
    )


def downgrade() -> None:
    # Streams of one resource have no place in the older schema: their runs, schedules and checkpoints go.
    op.execute("DELETE FROM sync_runs WHERE resource <> ''")
    op.drop_index("uq_sync_runs_one_active", table_name="sync_runs")
    op.create_index(
        "uq_sync_runs_one_active", "sync_runs", ["connection_id", "capability"], unique=True, postgresql_where=ACTIVE
    )
    op.drop_index("ix_sync_runs_connection_capability", table_name="sync_runs")
    op.create_index("ix_sync_runs_connection_capability", "sync_runs", ["connection_id", "capability", "created_at"])
    op.drop_column("sync_runs", "resource")

    op.execute("DELETE FROM schedules WHERE resource <> ''")
    op.drop_constraint(op.f("pk_schedules"), "schedules", type_="primary")
    op.create_primary_key(op.f("pk_schedules"), "schedules", ["connection_id", "capability"])
    op.drop_column("schedules", "resource")

    op.execute("DELETE FROM checkpoints WHERE length(stream) > 64")
    op.alter_column(
        "checkpoints",
        "stream",
        existing_type=sa.String(length=128),
        type_=sa.String(length=64),
        existing_nullable=False,
    )
    op.drop_table("connection_resources")
