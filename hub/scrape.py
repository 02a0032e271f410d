"""Gauges read at scrape time for `/metrics`: runs by status and capability, and each Celery queue's depth."""

from __future__ import annotations

from collections.abc import Iterator

import redis
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from sync.celery_app import QUEUES
from sync.models import RunStatus, SyncRun

# kombu's Redis transport keeps a queue's messages of priority p > 0 in a list of its own, `<queue>\x06\x16<p>`.
PRIORITY_SEPARATOR, PRIORITY_STEPS = "\x06\x16", (3, 6, 9)


class ScrapeTimeGauges(Collector):
    def __init__(self, sessions: sessionmaker[Session], broker: redis.Redis) -> None:
        self.sessions = sessions
        self.broker = broker

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield self._runs()
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

    def _queues(self) -> GaugeMetricFamily:
        depth = GaugeMetricFamily("synchub_queue_depth", "Tasks waiting in each Celery queue.", labels=["queue"])
        for queue in QUEUES:
            names = [queue, *(f"{queue}{PRIORITY_SEPARATOR}{step}" for step in PRIORITY_STEPS)]
            with self.broker.pipeline(transaction=False) as pipe:
                for name in names:
                    pipe.llen(name)
                depth.add_metric([queue], sum(pipe.execute()))
        return depth
