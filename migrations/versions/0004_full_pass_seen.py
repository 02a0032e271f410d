"""full_pass_seen: the records a full pass saw unchanged, instead of a stamp on every row

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "full_pass_seen",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("connection_id", sa.Uuid(), nullable=False),
        sa.Column("record_table", sa.String(length=64), nullable=False),
        sa.Column("pass_id", sa.String(length=36), nullable=False),
        sa.Column("external_ids", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["connection_id"],
            ["connections.id"],
            name=op.f("fk_full_pass_seen_connection_id_connections"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_full_pass_seen")),
    )
    with op.batch_alter_table("full_pass_seen", schema=None) as batch_op:
        batch_op.create_index(
            "ix_full_pass_seen_connection_id", ["connection_id", "record_table", "pass_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("full_pass_seen", schema=None) as batch_op:
        batch_op.drop_index("ix_full_pass_seen_connection_id")

    op.drop_table("full_pass_seen")
