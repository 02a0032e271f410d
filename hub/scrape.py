"""Gauges read at scrape time for `/metrics`: runs by status and capability, webhook deliveries by status and the
oldest pending one's age, and each Celery queue's depth."""

from __future__ import annotations

from collections.abc import Iterator

import redis
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from core.models import utcnow
from sync.celery_app import QUEUES
from sync.models import RunStatus, SyncRun
from webhooks.models import DeliveryStatus, WebhookDelivery

# kombu's Redis transport keeps a queue's messages of priority p > 0 in a list of its own, `<queue>\x06\x16<p>`.
PRIORITY_SEPARATOR, PRIORITY_STEPS = "\x06\x16", (3, 6, 9)


class ScrapeTimeGauges(Collector):
    def __init__(self, sessions: sessionmaker[Session], broker: redis.Redis) -> None:
        self.sessions = sessions
        self.broker = broker

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield self._runs()
        yield from self._deliveries()
        yield self._queues()

    def _runs(self) -> GaugeMetricFamily:
        runs = GaugeMetricFamily(
            "synchub_runs", "Sync runs on record by status and capability.", labels=["status", "capability"]
        )
        with self.sessions() as session:
            rows = session.execute(
                select(SyncRun.status, SyncRun.capability, func.count()).group_by(SyncRun.status, SyncRun.capability)
            ).all()
        counts = {(status, capability): count for status, capability, count in rows}
        for capability in sorted({capability for _, capability in counts}):
            for status in RunStatus:
                runs.add_metric([status.value, capability], counts.get((status.value, capability), 0))
        return runs

    def _deliveries(self) -> Iterator[GaugeMetricFamily]:
        deliveries = GaugeMetricFamily(
            "synchub_webhook_deliveries", "Webhook deliveries in the inbox by status.", labels=["status"]
        )
        with self.sessions() as session:
            rows = session.execute(select(WebhookDelivery.status, func.count()).group_by(WebhookDelivery.status)).all()
            counts = {status: count for status, count in rows}
            oldest = session.scalar(
                select(func.min(WebhookDelivery.received_at)).where(
                    WebhookDelivery.status == DeliveryStatus.PENDING.value
                )
            )
        for status in DeliveryStatus:
            deliveries.add_metric([status.value], counts.get(status.value, 0))
        yield deliveries
        age = (utcnow() - oldest).total_seconds() if oldest is not None else 0.0
        yield GaugeMetricFamily(
            "synchub_webhook_oldest_pending_seconds",
            "Age of the oldest pending webhook delivery (0 when none is pending).",
            value=max(0.0, age),
        )

    def _queues(self) -> GaugeMetricFamily:
        depth = GaugeMetricFamily("synchub_queue_depth", "Tasks waiting in each Celery queue.", labels=["queue"])
        for queue in QUEUES:
            names = [queue, *(f"{queue}{PRIORITY_SEPARATOR}{step}" for step in PRIORITY_STEPS)]
            with self.broker.pipeline(transaction=False) as pipe:
                for name in names:
                    pipe.llen(name)
                depth.add_metric([queue], sum(pipe.execute()))
        return depth
