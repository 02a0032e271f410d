"""The receiver's hand-built task message must stay what Celery's own `send_task` writes to the queue, so a Celery
or kombu upgrade that changes the envelope fails here, by name, rather than as deliveries that never process."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import redis

from core.settings import Settings
from sync.celery_app import make_celery
from webhooks import processing
from webhooks.enqueue import Enqueuer

IDS_DIFFER = {"id", "task_id", "root_id", "correlation_id", "delivery_tag"}


def without_ids(value: Any) -> Any:
    """The message with every per-send id blanked, recursively."""
    if isinstance(value, dict):
        return {key: None if key in IDS_DIFFER else without_ids(item) for key, item in value.items()}
    if isinstance(value, list):
        return [without_ids(item) for item in value]
    return value


def test_the_enqueued_message_is_the_one_send_task_writes(settings: Settings) -> None:
    celery = make_celery(settings)
    client = redis.Redis.from_url(settings.redis_url)
    client.delete(processing.QUEUE)
    try:
        assert processing.send(celery, [7, 8])
        asyncio.run(Enqueuer(celery).send([7, 8]))
        raw = client.lrange(processing.QUEUE, 0, -1)
    finally:
        client.delete(processing.QUEUE)
    assert len(raw) == 2, raw
    ours, celerys = (json.loads(message) for message in raw)  # LPUSH: the newest first
    assert json.loads(base64.b64decode(ours["body"])) == json.loads(base64.b64decode(celerys["body"]))
    ours.pop("body"), celerys.pop("body")
    for message in (ours, celerys):
        message["headers"].pop("origin", None)  # the sending process's name, not part of the contract
    assert without_ids(ours) == without_ids(celerys)
