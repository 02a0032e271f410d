"""connection_resources.parts: the parts chosen within a resource (a Page's lead forms); null means all of them

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("connection_resources", sa.Column("parts", sa.JSON(), nullable=True))


def downgrade() -> None:
    op.drop_column("connection_resources", "parts")
