"""Sync runs (status, counts, progress, errors), schedules, per-stream checkpoints, and the resources a user chose.

A stream is one (connection, capability, resource); the resource is the `connection_resources` row's id as text,
or `''` for a capability without resources. It is NOT NULL everywhere: NULLs are distinct in a unique index and
would let two active runs of one stream in.
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    ColumnElement,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    Update,
    Uuid,
    text,
    update,
)
from sqlalchemy.orm import Mapped, mapped_column

from connectors.base import Resource
from core.db import Base
from core.holdings import Owner, Role, holding
from core.models import UTCDateTime, utcnow


class RunStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    WAITING = "waiting"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


ACTIVE_STATUSES = frozenset({RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.WAITING})
KEEP = "keep"
NO_RESOURCE = ""
RESOURCE_KEY_LENGTH = 36


class RunEnded(Exception):
    """A run that already ended was asked to move on: an ended run never starts again; a new run does."""


class ConnectionResource(Base):
    """A resource the provider listed for a capability of a connection (a calendar, a Page), whether the user
    selected it, and since when the provider no longer lists it (`gone_at`: it stops syncing)."""

    __tablename__ = "connection_resources"
    __table_args__ = (
        UniqueConstraint("connection_id", "capability", "external_id"),
        holding(Owner.CONNECTION, Role.HISTORY, key="connection_id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    connection_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("connections.id", ondelete="CASCADE"))
    capability: Mapped[str] = mapped_column(String(64))
    external_id: Mapped[str] = mapped_column(Text)
    display_name: Mapped[str] = mapped_column(Text)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    selected: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    parts: Mapped[list[str] | None] = mapped_column(JSON)
    """The parts chosen within it (a Page's forms, by id) where its capability lists parts; null: all of them."""
    gone_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    @property
    def resource(self) -> Resource:
        """The resource as a stream, a lifecycle call or a webhook sees it."""
        parts = frozenset(self.parts) if self.parts is not None else None
        return Resource(self.external_id, self.display_name, self.detail, parts)

    @property
    def key(self) -> str:
        """The resource as runs, schedules, checkpoints and records name it."""
        return str(self.id)


class Checkpoint(Base):
    """The cursor that is safe to resume a stream from, committed with the page it follows.

    Cursors hold provider-issued sync and page tokens, so they are sealed like credentials. The stream is the
    capability, or `capability/<resource id>`; it is part of the seal's associated data.
    """

    __tablename__ = "checkpoints"
    __table_args__ = (holding(Owner.CONNECTION, Role.SECRET, key="connection_id"),)

    connection_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("connections.id", ondelete="CASCADE"), primary_key=True
    )
    stream: Mapped[str] = mapped_column(String(128), primary_key=True)
    key_id: Mapped[int] = mapped_column(SmallInteger)
    sealed: Mapped[bytes] = mapped_column(LargeBinary)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class Schedule(Base):
    """When a stream (a capability of a connection, or one resource of it) is next due, and how its recent runs
    went."""

    __tablename__ = "schedules"
    __table_args__ = (
        Index("ix_schedules_next_run_at", "next_run_at"),
        holding(Owner.CONNECTION, Role.HISTORY, key="connection_id"),
    )

    connection_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("connections.id", ondelete="CASCADE"), primary_key=True
    )
    capability: Mapped[str] = mapped_column(String(64), primary_key=True)
    resource: Mapped[str] = mapped_column(
        String(RESOURCE_KEY_LENGTH), primary_key=True, default=NO_RESOURCE, server_default=NO_RESOURCE
    )
    next_run_at: Mapped[datetime] = mapped_column(UTCDateTime)
    interval_seconds: Mapped[int | None] = mapped_column(Integer)
    failures: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    last_error: Mapped[str | None] = mapped_column(Text)
    last_success_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class SyncRun(Base):
    __tablename__ = "sync_runs"
    __table_args__ = (
        Index("ix_sync_runs_connection_capability", "connection_id", "capability", "resource", "created_at"),
        Index(
            "uq_sync_runs_one_active",
            "connection_id",
            "capability",
            "resource",
            unique=True,
            postgresql_where=text("status IN ('queued', 'running', 'waiting')"),
        ),
        holding(Owner.CONNECTION, Role.HISTORY, key="connection_id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    connection_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("connections.id", ondelete="CASCADE"))
    capability: Mapped[str] = mapped_column(String(64))
    resource: Mapped[str] = mapped_column(String(RESOURCE_KEY_LENGTH), default=NO_RESOURCE, server_default=NO_RESOURCE)
    status: Mapped[str] = mapped_column(String(16), default=RunStatus.QUEUED.value)
    trigger: Mapped[str] = mapped_column(String(32), default="schedule")
    full_sync: Mapped[bool] = mapped_column(Boolean, default=False)
    records_seen: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    records_created: Mapped[int] = mapped_column(Integer, default=0)
    records_updated: Mapped[int] = mapped_column(Integer, default=0)
    records_deleted: Mapped[int] = mapped_column(Integer, default=0)
    records_suppressed: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    """Records (or attendees) skipped because they carry an address the workspace asked to forget."""
    api_calls: Mapped[int] = mapped_column(Integer, default=0)
    progress_done: Mapped[int] = mapped_column(Integer, default=0)
    progress_total: Mapped[int | None] = mapped_column(Integer)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    retries: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    enqueued_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    follow_up: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    error: Mapped[str | None] = mapped_column(Text)
    not_before: Mapped[datetime | None] = mapped_column(UTCDateTime)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    @property
    def active(self) -> bool:
        return RunStatus(self.status) in ACTIVE_STATUSES

    def move_to(self, status: RunStatus, error: str | None = KEEP) -> None:
        """The one place a run changes status. An active run may move to any status (a handed-over slice runs
        again, a retry queues, a wait waits); an ended one moves nowhere. Running stamps the heartbeat (and the
        start, once); ending stamps the finish. `error` replaces the shown error unless kept; success clears it."""
        if not self.active:
            raise RunEnded(f"run {self.id} already {self.status}; it cannot become {status.value}")
        now = utcnow()
        self.status = status.value
        if status == RunStatus.RUNNING:
            self.heartbeat_at = now
            self.started_at = self.started_at or now
        if status not in ACTIVE_STATUSES:
            self.finished_at = now
        if status == RunStatus.SUCCEEDED:
            self.error = None
        elif error != KEEP:
            self.error = error


def queued_again(*where: ColumnElement[bool], enqueued_at: datetime | None) -> Update:
    """`move_to(QUEUED)` for a set of runs in one statement (the tick's claim, a batch the broker refused): only
    active runs move, as an ended run moves nowhere, and queued stamps nothing else. Add `.returning(...)`."""
    active = [status.value for status in ACTIVE_STATUSES]
    return (
        update(SyncRun)
        .where(SyncRun.status.in_(active), *where)
        .values(status=RunStatus.QUEUED.value, enqueued_at=enqueued_at)
    )


class PushChannel(Base):
    """A push channel opened at the provider for one selected resource (a calendar's watch): its secret
    token is kept only as a SHA-256 hash, compared in constant time when a notification names the channel. A
    stopped channel stays as a row (`stopped_at`) so its late notifications are recognised and ignored."""

    __tablename__ = "push_channels"
    __table_args__ = (
        Index("ix_push_channels_expiry", "expires_at"),
        holding(Owner.CONNECTION, Role.SECRET, key="connection_id"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    connection_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("connections.id", ondelete="CASCADE"))
    capability: Mapped[str] = mapped_column(String(64))
    resource: Mapped[str] = mapped_column(String(36))
    external_id: Mapped[str] = mapped_column(Text)
    token_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    provider_resource_id: Mapped[str | None] = mapped_column(Text)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    stopped_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
