"""crm_tombstones (written by a trigger on every record table), the records' change-feed indexes, and the audit
log's per-day counters (token refreshes)

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

RECORD_TABLES = {"crm_contacts": "contacts", "crm_leads": "leads", "crm_events": "events"}
"""Each record kind's table and the kind its tombstones name (the kind's API segment)."""

# One statement-level trigger per table with the deleted rows as a transition table: a bulk delete (a full pass's
# reconciliation, an erase) writes its tombstones in one INSERT ... SELECT, not one per row. A transaction that
# removes a whole workspace sets `synchub.tombstones` to `off` locally: nobody is left to read them.
TOMBSTONE_FUNCTION = """
CREATE FUNCTION crm_tombstone() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF coalesce(current_setting('synchub.tombstones', true), '') = 'off' THEN
        RETURN NULL;
    END IF;
    INSERT INTO crm_tombstones (record_id, kind, workspace_id, deleted_at)
    SELECT gone.id, TG_ARGV[0], gone.workspace_id, clock_timestamp() FROM gone
    ON CONFLICT (record_id) DO NOTHING;
    RETURN NULL;
END
$$
"""


def upgrade() -> None:
    op.create_table(
        "crm_tombstones",
        sa.Column("record_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("workspace_id", sa.String(length=64), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("record_id"),
    )
    op.create_index("ix_crm_tombstones_feed", "crm_tombstones", ["workspace_id", "kind", "deleted_at", "record_id"])
    op.create_index("ix_crm_tombstones_deleted_at", "crm_tombstones", ["deleted_at"])
    op.execute(TOMBSTONE_FUNCTION)
    for table, kind in RECORD_TABLES.items():
        op.create_index(f"ix_{table}_feed", table, ["workspace_id", "updated_at", "id"])
        op.execute(
            f"CREATE TRIGGER {table}_tombstones AFTER DELETE ON {table} REFERENCING OLD TABLE AS gone "
            f"FOR EACH STATEMENT EXECUTE FUNCTION crm_tombstone('{kind}')"
        )

    op.add_column("audit_log", sa.Column("day", sa.Date(), nullable=True))
    op.add_column("audit_log", sa.Column("times", sa.Integer(), server_default="1", nullable=False))
    op.create_index(
        "uq_audit_log_daily",
        "audit_log",
        ["connection_id", "action", "day"],
        unique=True,
        postgresql_where=sa.text("day IS NOT NULL"),
    )
    op.create_index("ix_audit_log_connection_at", "audit_log", ["connection_id", "at"])


def downgrade() -> None:
    op.drop_index("ix_audit_log_connection_at", table_name="audit_log")
    op.drop_index("uq_audit_log_daily", table_name="audit_log")
    op.drop_column("audit_log", "times")
    op.drop_column("audit_log", "day")
    for table in RECORD_TABLES:
        op.execute(f"DROP TRIGGER {table}_tombstones ON {table}")
        op.drop_index(f"ix_{table}_feed", table_name=table)
    op.execute("DROP FUNCTION crm_tombstone()")
    op.drop_table("crm_tombstones")
