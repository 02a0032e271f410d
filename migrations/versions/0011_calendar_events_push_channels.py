"""crm_events, crm_event_attendees and push_channels: Google Calendar's events and its push channels

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "crm_events",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("workspace_id", sa.String(length=64), nullable=False),
        sa.Column("connection_id", sa.Uuid(), nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("resource", sa.String(length=36), server_default="", nullable=False),
        sa.Column("external_id", sa.String(length=1024), nullable=False),
        sa.Column("ical_uid", sa.String(length=1024), nullable=True),
        sa.Column("recurrence_id", sa.String(length=32), nullable=True),
        sa.Column("master_id", sa.String(length=1024), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("summary", sa.Text(), nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("location", sa.Text(), nullable=True),
        sa.Column("all_day", sa.Boolean(), nullable=False),
        sa.Column("start_date", sa.Date(), nullable=True),
        sa.Column("end_date", sa.Date(), nullable=True),
        sa.Column("start_at", TZ, nullable=True),
        sa.Column("end_at", TZ, nullable=True),
        sa.Column("time_zone", sa.String(length=64), nullable=True),
        sa.Column("recurrence", sa.JSON(), nullable=False),
        sa.Column("span_start", TZ, nullable=True),
        sa.Column("span_end", TZ, nullable=True),
        sa.Column("organizer_email", sa.String(length=320), nullable=True),
        sa.Column("sequence", sa.Integer(), nullable=True),
        sa.Column("full_pass_id", sa.String(length=36), nullable=True),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
        sa.ForeignKeyConstraint(
            ["connection_id"],
            ["connections.id"],
            name=op.f("fk_crm_events_connection_id_connections"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_crm_events")),
        sa.UniqueConstraint("connection_id", "resource", "external_id", name=op.f("uq_crm_events_connection_id")),
    )
    op.create_index("ix_crm_events_workspace_id", "crm_events", ["workspace_id", "id"])
    op.create_index("ix_crm_events_group", "crm_events", ["workspace_id", "ical_uid", "recurrence_id"])
    op.create_index("ix_crm_events_master", "crm_events", ["connection_id", "resource", "master_id"])
    op.create_table(
        "crm_event_attendees",
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("workspace_id", sa.String(length=64), nullable=False),
        sa.Column("display_name", sa.String(length=512), nullable=True),
        sa.Column("response_status", sa.String(length=16), nullable=True),
        sa.Column("organizer", sa.Boolean(), nullable=False),
        sa.Column("optional", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["event_id"],
            ["crm_events.id"],
            name=op.f("fk_crm_event_attendees_event_id_crm_events"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("event_id", "email", name=op.f("pk_crm_event_attendees")),
    )
    op.create_index("ix_crm_event_attendees_workspace_email", "crm_event_attendees", ["workspace_id", "email"])
    op.create_table(
        "push_channels",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("connection_id", sa.Uuid(), nullable=False),
        sa.Column("capability", sa.String(length=64), nullable=False),
        sa.Column("resource", sa.String(length=36), nullable=False),
        sa.Column("external_id", sa.Text(), nullable=False),
        sa.Column("token_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("provider_resource_id", sa.Text(), nullable=True),
        sa.Column("expires_at", TZ, nullable=True),
        sa.Column("stopped_at", TZ, nullable=True),
        sa.Column("created_at", TZ, nullable=False),
        sa.ForeignKeyConstraint(
            ["connection_id"],
            ["connections.id"],
            name=op.f("fk_push_channels_connection_id_connections"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_push_channels")),
    )
    op.create_index("ix_push_channels_expiry", "push_channels", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_push_channels_expiry", table_name="push_channels")
    op.drop_table("push_channels")
    op.drop_index("ix_crm_event_attendees_workspace_email", table_name="crm_event_attendees")
    op.drop_table("crm_event_attendees")
    op.drop_index("ix_crm_events_master", table_name="crm_events")
    op.drop_index("ix_crm_events_group", table_name="crm_events")
    op.drop_index("ix_crm_events_workspace_id", table_name="crm_events")
    op.drop_table("crm_events")
