"""The receiver's one Celery send per POST, on its event loop: Celery builds the task message (`as_task_v2`) and
kombu serialises its body, and the envelope kombu's Redis transport would write is pushed with one `LPUSH` through
redis.asyncio. `send_task` through kombu costs a thread hop, a pooled producer, a connection check and its retry
wrapper per call, about as much CPU as the rest of the receiver; the worker reads both alike. Anything else that
sends the task (the sweeper, `webhooks retry`) keeps `processing.send`."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import uuid
from collections.abc import Sequence

import redis
import redis.asyncio
from celery import Celery
from kombu.serialization import dumps

from core.logsafe import safe_exception
from webhooks.processing import PROCESS_TASK, QUEUE

log = logging.getLogger(__name__)

TIMEOUT_SECONDS = 2.0
"""Connect and reply timeout: a broker that hangs delays the answer this long at most; the sweeper sends later."""


class Enqueuer:
    def __init__(self, celery: Celery) -> None:
        self.celery = celery
        self.url = str(celery.conf.broker_url)
        self._client: redis.asyncio.Redis | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def message(self, ids: Sequence[int]) -> str:
        """The task as kombu's Redis transport stores it in the queue's list (anonymous exchange, as `send_task`
        with `queue=` sends it)."""
        task_id = str(uuid.uuid4())
        headers, properties, body, _ = self.celery.amqp.as_task_v2(
            task_id, PROCESS_TASK, args=[list(ids)], kwargs={}, ignore_result=True, reply_to=self.celery.thread_oid
        )
        content_type, encoding, data = dumps(body, serializer="json")  # type: ignore[no-untyped-call]
        raw = data.encode(encoding) if isinstance(data, str) else data
        properties = {
            **properties,
            "delivery_mode": 2,
            "delivery_info": {"exchange": "", "routing_key": QUEUE},
            "priority": 0,
            "body_encoding": "base64",
            "delivery_tag": str(uuid.uuid4()),
        }
        envelope = {
            "body": base64.b64encode(raw).decode(),
            "content-encoding": encoding,
            "content-type": content_type,
            "headers": headers,
            "properties": properties,
        }
        return json.dumps(envelope)

    def _redis(self) -> redis.asyncio.Redis:
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            self._client = redis.asyncio.Redis.from_url(
                self.url, socket_timeout=TIMEOUT_SECONDS, socket_connect_timeout=TIMEOUT_SECONDS
            )
            self._loop = loop
        return self._client

    async def send(self, ids: Sequence[int]) -> bool:
        """One task for these deliveries; False when the broker did not take it (the sweeper sends them later)."""
        message = self.message(ids)
        try:
            try:
                await self._redis().lpush(QUEUE, message)
            except redis.ConnectionError:  # a pooled connection from before a broker restart: once more, afresh
                await self._redis().lpush(QUEUE, message)
        except Exception as exc:
            log.warning(
                "could not enqueue deliveries; the sweeper will: %s", safe_exception(exc), extra={"count": len(ids)}
            )
            return False
        return True
