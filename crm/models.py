"""CRM tables with provenance: every record knows its workspace, connection, provider, resource and external id."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Date, ForeignKey, Index, Integer, String, Text, UniqueConstraint, Uuid, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base
from core.holdings import Owner, Role, holding
from core.models import UTCDateTime, utcnow


class ContactRow(Base):
    __tablename__ = "crm_contacts"
    __table_args__ = (
        UniqueConstraint("connection_id", "resource", "external_id"),
        Index("ix_crm_contacts_workspace_id", "workspace_id", "id"),
        Index("ix_crm_contacts_feed", "workspace_id", "updated_at", "id"),
        holding(Owner.CONNECTION, Role.RECORDS, key="connection_id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    workspace_id: Mapped[str] = mapped_column(String(64))
    connection_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("connections.id", ondelete="CASCADE"))
    provider: Mapped[str] = mapped_column(String(32))
    resource: Mapped[str] = mapped_column(String(36), default="", server_default="")
    external_id: Mapped[str] = mapped_column(String(255))
    display_name: Mapped[str | None] = mapped_column(String(512))
    given_name: Mapped[str | None] = mapped_column(String(255))
    family_name: Mapped[str | None] = mapped_column(String(255))
    emails: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    phones: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    organization: Mapped[str | None] = mapped_column(String(512))
    job_title: Mapped[str | None] = mapped_column(String(512))
    primary_email: Mapped[str | None] = mapped_column(String(320))
    full_pass_id: Mapped[str | None] = mapped_column(String(36))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class FullPassSeenRow(Base):
    """Existing records a full pass saw unchanged, one row per page: `delete_unseen` keeps them without the pass
    rewriting each row's `full_pass_id`. Holds external ids only; a pass's rows go when it completes."""

    __tablename__ = "full_pass_seen"
    __table_args__ = (
        Index("ix_full_pass_seen_connection_id", "connection_id", "record_table", "pass_id"),
        holding(Owner.CONNECTION, Role.SCRATCH, key="connection_id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    connection_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("connections.id", ondelete="CASCADE"))
    resource: Mapped[str] = mapped_column(String(36), default="", server_default="")
    record_table: Mapped[str] = mapped_column(String(64))
    pass_id: Mapped[str] = mapped_column(String(36))
    external_ids: Mapped[list[str]] = mapped_column(JSON)


class ContactEmailRow(Base):
    """Every address of every contact, lower-cased, so leads and attendees can be linked by email."""

    __tablename__ = "crm_contact_emails"
    __table_args__ = (
        Index("ix_crm_contact_emails_workspace_email", "workspace_id", "email"),
        holding(Owner.CONNECTION, Role.RECORDS, parent="crm_contacts"),
    )

    contact_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("crm_contacts.id", ondelete="CASCADE"), primary_key=True
    )
    email: Mapped[str] = mapped_column(String(320), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(String(64))


class LeadRow(Base):
    """A lead as one connection brought it in; the same lead reached through two connections of a workspace is two
    rows, grouped at read time by (workspace, external id)."""

    __tablename__ = "crm_leads"
    __table_args__ = (
        UniqueConstraint("connection_id", "resource", "external_id"),
        Index("ix_crm_leads_workspace_id", "workspace_id", "id"),
        Index("ix_crm_leads_feed", "workspace_id", "updated_at", "id"),
        Index("ix_crm_leads_workspace_external_id", "workspace_id", "external_id"),
        holding(Owner.CONNECTION, Role.RECORDS, key="connection_id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    workspace_id: Mapped[str] = mapped_column(String(64))
    connection_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("connections.id", ondelete="CASCADE"))
    provider: Mapped[str] = mapped_column(String(32))
    resource: Mapped[str] = mapped_column(String(36), default="", server_default="")
    external_id: Mapped[str] = mapped_column(String(255))
    page_id: Mapped[str] = mapped_column(String(64))
    form_id: Mapped[str | None] = mapped_column(String(64))
    ad_id: Mapped[str | None] = mapped_column(String(64))
    campaign_id: Mapped[str | None] = mapped_column(String(64))
    is_organic: Mapped[bool | None] = mapped_column(Boolean)
    platform: Mapped[str | None] = mapped_column(String(32))
    lead_created_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    email: Mapped[str | None] = mapped_column(Text)
    phone: Mapped[str | None] = mapped_column(Text)
    phone_e164: Mapped[str | None] = mapped_column(String(32))
    full_name: Mapped[str | None] = mapped_column(Text)
    first_name: Mapped[str | None] = mapped_column(Text)
    last_name: Mapped[str | None] = mapped_column(Text)
    answers: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, default=list)
    full_pass_id: Mapped[str | None] = mapped_column(String(36))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class EventRow(Base):
    """A calendar event as one source holds it: a single event, a series master (its RRULE/EXDATE lines in
    `recurrence`) or one exception of a series (`recurrence_id` set, `master_id` naming the master; a cancelled
    one hides that occurrence). Keyed by (connection, calendar resource, event id or CalDAV href); the same
    meeting through two accounts is two rows, grouped when read by (workspace, iCalUID, recurrence id)."""

    __tablename__ = "crm_events"
    __table_args__ = (
        UniqueConstraint("connection_id", "resource", "external_id"),
        Index("ix_crm_events_workspace_id", "workspace_id", "id"),
        Index("ix_crm_events_feed", "workspace_id", "updated_at", "id"),
        Index("ix_crm_events_group", "workspace_id", "ical_uid", "recurrence_id"),
        Index("ix_crm_events_master", "connection_id", "resource", "master_id"),
        holding(Owner.CONNECTION, Role.RECORDS, key="connection_id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    workspace_id: Mapped[str] = mapped_column(String(64))
    connection_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("connections.id", ondelete="CASCADE"))
    provider: Mapped[str] = mapped_column(String(32))
    resource: Mapped[str] = mapped_column(String(36), default="", server_default="")
    external_id: Mapped[str] = mapped_column(String(1024))
    ical_uid: Mapped[str | None] = mapped_column(String(1024))
    recurrence_id: Mapped[str | None] = mapped_column(String(32))
    master_id: Mapped[str | None] = mapped_column(String(1024))
    status: Mapped[str] = mapped_column(String(16), default="confirmed")
    summary: Mapped[str | None] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(Text)
    location: Mapped[str | None] = mapped_column(Text)
    all_day: Mapped[bool] = mapped_column(Boolean, default=False)
    start_date: Mapped[date | None] = mapped_column(Date)
    end_date: Mapped[date | None] = mapped_column(Date)
    start_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    end_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    time_zone: Mapped[str | None] = mapped_column(String(64))
    recurrence: Mapped[list[str]] = mapped_column(JSON, default=list)
    span_start: Mapped[datetime | None] = mapped_column(UTCDateTime)
    span_end: Mapped[datetime | None] = mapped_column(UTCDateTime)
    organizer_email: Mapped[str | None] = mapped_column(String(320))
    sequence: Mapped[int | None] = mapped_column(Integer)
    full_pass_id: Mapped[str | None] = mapped_column(String(36))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class EventAttendeeRow(Base):
    """An event's attendees by lower-cased email with their answer; the matching CRM contact is joined when read."""

    __tablename__ = "crm_event_attendees"
    __table_args__ = (
        Index("ix_crm_event_attendees_workspace_email", "workspace_id", "email"),
        holding(Owner.CONNECTION, Role.RECORDS, parent="crm_events"),
    )

    event_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("crm_events.id", ondelete="CASCADE"), primary_key=True)
    email: Mapped[str] = mapped_column(String(320), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(String(64))
    display_name: Mapped[str | None] = mapped_column(String(512))
    response_status: Mapped[str | None] = mapped_column(String(16))
    organizer: Mapped[bool] = mapped_column(Boolean, default=False)
    optional: Mapped[bool] = mapped_column(Boolean, default=False)


class TombstoneRow(Base):
    """That a record was deleted, for the CRM's change feed (`updated_since`): its id, kind (the API segment),
    workspace and when. Written by a trigger on each record table (migration 0012), so every way a record goes
    (a full pass's reconciliation, an incremental deletion, a disconnect or deselect with delete, an erase, a
    forgetting) leaves one; expired by the retention sweep after `retention_days`."""

    __tablename__ = "crm_tombstones"
    __table_args__ = (
        Index("ix_crm_tombstones_feed", "workspace_id", "kind", "deleted_at", "record_id"),
        Index("ix_crm_tombstones_deleted_at", "deleted_at"),
        holding(
            Owner.WORKSPACE,
            Role.TOMBSTONE,
            key="workspace_id",
            reason="no personal data: a deleted record's random id, its kind, its workspace and when, no connection "
            "or user and nothing of its contents; it outlives an erase of the user or connection on purpose (the "
            "CRM must learn the record is gone), goes with its workspace, and expires after the retention window",
        ),
    )

    record_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    workspace_id: Mapped[str] = mapped_column(String(64))
    deleted_at: Mapped[datetime] = mapped_column(UTCDateTime, server_default=func.now())
