"""The webhook inbox table: every change a provider POSTed, stored before the answer, until it is processed."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Identity, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base
from core.holdings import Owner, Role, holding
from core.models import UTCDateTime, utcnow

DEDUPE_KEY_LENGTH = 255


class DeliveryStatus(enum.StrEnum):
    PENDING = "pending"
    PROCESSED = "processed"
    IGNORED = "ignored"
    FAILED = "failed"


class WebhookDelivery(Base):
    """One change a provider sent: `pending` until a worker processed it (`processed`), found nothing to do
    (`ignored`: an unknown Page, a change kind not synced) or gave up (`failed`). A worker holds a pending one
    while `claimed_until` is ahead; `not_before` delays its next attempt; `swept_at` is when the sweeper last
    sent it again; `routed` counts the connections it reached. The payload is dropped after the retention window."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("connector", "dedupe_key"),
        Index("ix_webhook_deliveries_status_received_at", "status", "received_at"),
        holding(
            Owner.NOBODY,
            Role.NONE,
            reason="a provider's change notices as it sent them, before any connection is known: provider ids "
            "(a Page, a submission) that processing fetches the contents for; no record contents, and the payload is "
            "purged after SYNCHUB_WEBHOOKS__RETENTION_DAYS",
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    connector: Mapped[str] = mapped_column(String(64))
    dedupe_key: Mapped[str] = mapped_column(String(DEDUPE_KEY_LENGTH))
    route_key: Mapped[str] = mapped_column(Text)
    payload: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    status: Mapped[str] = mapped_column(String(16), default=DeliveryStatus.PENDING.value)
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    not_before: Mapped[datetime | None] = mapped_column(UTCDateTime)
    swept_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    routed: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    error: Mapped[str | None] = mapped_column(Text)
