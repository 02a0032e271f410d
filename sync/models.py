"""Sync runs (status, counts, progress, errors) and per-stream checkpoints."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Index, Integer, LargeBinary, SmallInteger, String, Text, Uuid, text
from sqlalchemy.orm import Mapped, mapped_column

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


class RunEnded(Exception):
    """A run that already ended was asked to move on: an ended run never starts again; a new run does."""


class Checkpoint(Base):
    """The cursor that is safe to resume a stream from, committed with the page it follows.

    Cursors hold provider-issued sync and page tokens, so they are sealed like credentials.
    """

    __tablename__ = "checkpoints"
    __table_args__ = (holding(Owner.CONNECTION, Role.SECRET, key="connection_id"),)

    connection_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("connections.id", ondelete="CASCADE"), primary_key=True
    )
    stream: Mapped[str] = mapped_column(String(64), primary_key=True)
    key_id: Mapped[int] = mapped_column(SmallInteger)
    sealed: Mapped[bytes] = mapped_column(LargeBinary)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class Schedule(Base):
    """When a capability of a connection is next due, and how its recent runs went."""

    __tablename__ = "schedules"
    __table_args__ = (
        Index("ix_schedules_next_run_at", "next_run_at"),
        holding(Owner.CONNECTION, Role.HISTORY, key="connection_id"),
    )

    connection_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("connections.id", ondelete="CASCADE"), primary_key=True
    )
    capability: Mapped[str] = mapped_column(String(64), primary_key=True)
    next_run_at: Mapped[datetime] = mapped_column(UTCDateTime)
    interval_seconds: Mapped[int | None] = mapped_column(Integer)
    failures: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    last_error: Mapped[str | None] = mapped_column(Text)
    last_success_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class SyncRun(Base):
    __tablename__ = "sync_runs"
    __table_args__ = (
        Index("ix_sync_runs_connection_capability", "connection_id", "capability", "created_at"),
        Index(
            "uq_sync_runs_one_active",
            "connection_id",
            "capability",
            unique=True,
            postgresql_where=text("status IN ('queued', 'running', 'waiting')"),
        ),
        holding(Owner.CONNECTION, Role.HISTORY, key="connection_id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    connection_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("connections.id", ondelete="CASCADE"))
    capability: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default=RunStatus.QUEUED.value)
    trigger: Mapped[str] = mapped_column(String(32), default="schedule")
    full_sync: Mapped[bool] = mapped_column(Boolean, default=False)
    records_seen: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    records_created: Mapped[int] = mapped_column(Integer, default=0)
    records_updated: Mapped[int] = mapped_column(Integer, default=0)
    records_deleted: Mapped[int] = mapped_column(Integer, default=0)
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
