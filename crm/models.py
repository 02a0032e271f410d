"""CRM tables with provenance: every record knows its workspace, connection, provider, resource and external id."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, String, Text, UniqueConstraint, Uuid
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
