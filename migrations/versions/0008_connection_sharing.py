"""connection sharing: who reads a connection's records ('owner' or 'workspace'); existing connections keep
theirs to their owner

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("connections", sa.Column("sharing", sa.String(length=16), server_default="owner", nullable=False))


def downgrade() -> None:
    op.drop_column("connections", "sharing")
