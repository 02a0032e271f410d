"""The Celery application on Redis, configured so a killed worker loses nothing and a healthy task never runs twice."""

from __future__ import annotations

from datetime import timedelta
from functools import partial
from typing import Any

from celery import Celery, signals
from celery.worker.consumer import Consumer
from kombu.entity import Queue

from core.settings import Settings

QUEUES = ("webhooks", "sync", "maintenance")

TASK_ROUTES = {
    "synchub.webhooks.*": {"queue": "webhooks"},
    "synchub.sync.*": {"queue": "sync"},
    "synchub.maintenance.*": {"queue": "maintenance"},
}


def _logging_is_ours(**_: object) -> None:
    """A receiver here tells Celery to leave logging alone: the worker and beat commands set it up (core.logs)."""


signals.setup_logging.connect(_logging_is_ours)


def beat_schedule(settings: Settings) -> dict[str, dict[str, object]]:
    """What beat sends and how often; what is due is decided from the database when each tick runs."""
    return {
        "enforce-retention": {"task": "synchub.maintenance.enforce_retention", "schedule": timedelta(hours=6)},
        "refresh-tokens": {
            "task": "synchub.maintenance.refresh_tokens",
            "schedule": timedelta(seconds=settings.vault.refresh_tick_seconds),
        },
        "reconcile-schedules": {"task": "synchub.maintenance.reconcile_schedules", "schedule": timedelta(minutes=10)},
        "schedule-tick": {
            "task": "synchub.maintenance.tick",
            "schedule": timedelta(seconds=settings.schedule.tick_seconds),
        },
        "sweep-webhooks": {
            "task": "synchub.webhooks.sweep",
            "schedule": timedelta(seconds=settings.webhooks.sweep_seconds),
        },
        "purge-webhooks": {"task": "synchub.maintenance.purge_webhooks", "schedule": timedelta(hours=1)},
        "renew-channels": {"task": "synchub.maintenance.renew_channels", "schedule": timedelta(minutes=30)},
        "purge-cancelled-workspaces": {
            "task": "synchub.maintenance.purge_cancelled_workspaces",
            "schedule": timedelta(hours=6),
        },
        "retry-provider-undos": {
            "task": "synchub.maintenance.retry_provider_undos",
            "schedule": timedelta(seconds=settings.privacy.undo_sweep_seconds),
        },
    }


class SteadyReconnectConsumer(Consumer):  # type: ignore[misc]
    """Celery's consumer, retrying a lost broker at the steady interval of `broker_transport_options` instead of
    kombu's backoff (2, 4, 6... s), which Celery's consumer applies whatever the options say: a worker is back
    within about a second of Redis coming back."""

    def ensure_connected(self, conn: Any) -> Any:
        options = self.app.conf.broker_transport_options
        conn.ensure_connection = partial(
            conn.ensure_connection,
            interval_start=options["interval_start"],
            interval_step=options["interval_step"],
            interval_max=options["interval_max"],
        )
        return super().ensure_connected(conn)


def make_celery(settings: Settings) -> Celery:
    """Build the app from validated settings; the settings already refuse a visibility timeout too short."""
    app = Celery(
        "synchub", broker=settings.redis_url, backend=settings.redis_url, include=["sync.tasks", "webhooks.tasks"]
    )
    limits = settings.celery
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_time_limit=limits.task_time_limit,
        task_soft_time_limit=limits.task_soft_time_limit,
        task_default_queue="sync",
        task_queues=[Queue(name) for name in QUEUES],  # type: ignore[no-untyped-call]
        task_routes=TASK_ROUTES,
        broker_transport_options={
            "visibility_timeout": limits.visibility_timeout,
            "unacked_restore_interval": limits.unacked_restore_interval,
            "unacked_restore_throttle": limits.unacked_restore_throttle,
            # kombu's reconnect intervals wherever a connection opens its channel; Celery's consumer ignores them,
            # so SteadyReconnectConsumer passes them itself.
            "interval_start": limits.broker_reconnect_seconds,
            "interval_step": 0,
            "interval_max": limits.broker_reconnect_seconds,
        },
        result_backend_transport_options={"visibility_timeout": limits.visibility_timeout},
        result_expires=timedelta(days=1),
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,  # a worker waits for its broker as long as it takes
        worker_consumer=f"{__name__}:SteadyReconnectConsumer",
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
        worker_send_task_events=False,
        beat_schedule=beat_schedule(settings),
        timezone="UTC",
        enable_utc=True,
    )
    return app
