"""privacy_suppressions, workspace_cancellations, privacy_pending_undos, sync_runs.records_suppressed: erase,
forget a person, and the retention of cancelled workspaces

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "privacy_suppressions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("workspace_id", sa.String(length=64), nullable=False),
        sa.Column("key_id", sa.SmallInteger(), nullable=False),
        sa.Column("digest", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_privacy_suppressions")),
        sa.UniqueConstraint("workspace_id", "key_id", "digest", name=op.f("uq_privacy_suppressions_workspace_id")),
    )
    op.create_table(
        "workspace_cancellations",
        sa.Column("workspace_id", sa.String(length=64), nullable=False),
        sa.Column("cancelled_at", TZ, nullable=False),
        sa.PrimaryKeyConstraint("workspace_id", name=op.f("pk_workspace_cancellations")),
    )
    op.create_table(
        "privacy_pending_undos",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("auth_provider", sa.String(length=32), nullable=False),
        sa.Column("key_id", sa.Integer(), nullable=False),
        sa.Column("sealed", sa.LargeBinary(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", TZ, nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", TZ, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_privacy_pending_undos")),
    )
    op.create_index("ix_privacy_pending_undos_next_attempt_at", "privacy_pending_undos", ["next_attempt_at"])
    op.add_column("sync_runs", sa.Column("records_suppressed", sa.Integer(), server_default="0", nullable=False))


def downgrade() -> None:
    op.drop_column("sync_runs", "records_suppressed")
    op.drop_index("ix_privacy_pending_undos_next_attempt_at", table_name="privacy_pending_undos")
    op.drop_table("privacy_pending_undos")
    op.drop_table("workspace_cancellations")
    op.drop_table("privacy_suppressions")
