"""The webhook tasks on the hub's Celery app: process deliveries, sweep the inbox, purge old payloads."""

from __future__ import annotations

import logging

from core.db import transaction
from sync import retry
from sync.runtime import runtime
from sync.tasks import app
from sync.wiring import engine
from webhooks import inbox
from webhooks.processing import PROCESS_TASK, Processor, send

log = logging.getLogger(__name__)
SEND_BATCH = 100


@app.task(name=PROCESS_TASK)
def process(ids: list[int]) -> dict[str, int]:
    """Process the deliveries a POST (or the sweeper) sent for a time budget, then hand the rest to the next task;
    each one to try again goes back with a countdown, or to the sweeper when its wait is longer than a countdown
    may be."""
    report = Processor(engine(), app).run([int(i) for i in ids])
    longest = retry.longest_countdown(runtime().settings.celery)
    for delivery_id, wait in report.again:
        if wait <= longest:
            send(app, [delivery_id], countdown=wait)
    if report.rest:
        send(app, report.rest)
    return report.done


@app.task(name="synchub.webhooks.sweep")
def sweep() -> dict[str, int]:
    """Fail the deliveries out of attempts and send again those that never reached (or left) a worker."""
    rt = runtime()
    with transaction(rt.sessions) as session:
        failed, ids = inbox.sweep(session, rt.settings.webhooks)
    for start in range(0, len(ids), SEND_BATCH):
        send(app, ids[start : start + SEND_BATCH])
    if failed or ids:
        log.info("webhook inbox swept", extra={"count": len(ids), "status": "resent", "failed": failed})
    return {"failed": failed, "resent": len(ids)}


@app.task(name="synchub.maintenance.purge_webhooks")
def purge() -> dict[str, int]:
    """Drop the payloads of deliveries finished longer ago than the retention window."""
    rt = runtime()
    with transaction(rt.sessions) as session:
        purged = inbox.purge(session, rt.settings.webhooks.retention_days)
    return {"purged": purged}
