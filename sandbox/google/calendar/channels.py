"""Calendar push channels (events.watch) and the notification sender: an empty POST per message with the
X-Goog-Channel-* and X-Goog-Resource-* headers, `sync` first, then `exists` for each change of the calendar;
retried with backoff on 500/502/503/504 as Google does, never for a stopped or expired channel."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from dataclasses import asdict, dataclass, field
from email.utils import formatdate
from typing import TYPE_CHECKING, Any, Literal

import httpx

if TYPE_CHECKING:
    from sandbox.google.state import GoogleState

SUCCESS = frozenset({102, 200, 201, 202, 204})
RETRIED = frozenset({500, 502, 503, 504})
ResourceState = Literal["sync", "exists", "not_exists"]


@dataclass
class Channel:
    id: str
    client_id: str
    account: str
    calendar_id: str
    resource_id: str
    resource_uri: str
    address: str
    token: str | None
    expiration_ms: int
    created: float
    stopped: float | None = None
    message_number: int = 0

    def live(self, now: float) -> bool:
        return self.stopped is None and now * 1000 < self.expiration_ms

    def record(self, now: float) -> dict[str, Any]:
        return {**asdict(self), "live": self.live(now)}


@dataclass
class Notification:
    id: int
    channel_id: str
    client_id: str
    account: str
    calendar_id: str
    address: str
    resource_state: ResourceState
    message_number: int
    created: float
    state: Literal["pending", "retrying", "delivered", "failed", "dropped"] = "pending"
    attempts: list[dict[str, Any]] = field(default_factory=list)

    def record(self) -> dict[str, Any]:
        return asdict(self)


def headers(channel: Channel, state: ResourceState, number: int) -> dict[str, str]:
    values = {
        "X-Goog-Channel-ID": channel.id,
        "X-Goog-Channel-Expiration": formatdate(channel.expiration_ms / 1000, usegmt=True),
        "X-Goog-Message-Number": str(number),
        "X-Goog-Resource-ID": channel.resource_id,
        "X-Goog-Resource-State": state,
        "X-Goog-Resource-URI": channel.resource_uri,
        "User-Agent": "APIs-Google; (+https://developers.google.com/webmasters/APIs-Google.html)",
    }
    if channel.token is not None:
        values["X-Goog-Channel-Token"] = channel.token
    return values


class ChannelSender:
    """Lives beside the Google state (never pickled): the delivery tasks in flight."""

    def __init__(self, google: GoogleState) -> None:
        self.google = google
        self.rng = random.Random(f"{google.seed}:calendar-notifications")
        self.tasks: set[asyncio.Task[None]] = set()
        self.client: httpx.AsyncClient | None = None

    def http(self) -> httpx.AsyncClient:
        """One client for every delivery: making one (its TLS context) per message costs more than the message."""
        if self.client is None:
            self.client = httpx.AsyncClient()
        return self.client

    def spawn(self, coroutine: Any) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def changed(self, account: str, calendar_id: str, state: ResourceState = "exists") -> list[Notification]:
        """A change of the calendar: an `exists` message on each live channel watching it (`not_exists` when the
        calendar itself is gone)."""
        now = time.time()
        return [
            self.send(channel, state)
            for channel in list(self.google.channels.values())
            if channel.account == account and channel.calendar_id == calendar_id and channel.live(now)
        ]

    def send(self, channel: Channel, state: ResourceState) -> Notification:
        """Message numbers: 1 for `sync`, then increasing but not sequential."""
        channel.message_number = 1 if state == "sync" else channel.message_number + self.rng.randint(1, 9)
        notifications = self.google.notifications
        notification = Notification(
            len(notifications) + 1,
            channel.id,
            channel.client_id,
            channel.account,
            channel.calendar_id,
            channel.address,
            state,
            channel.message_number,
            time.time(),
        )
        notifications.append(notification)
        if self.google.settings.calendar_drop_notifications:
            notification.state = "dropped"
        else:
            self.spawn(self.deliver(notification, headers(channel, state, channel.message_number)))
        return notification

    async def deliver(self, notification: Notification, sent_headers: dict[str, str]) -> None:
        settings = self.google.settings
        client = self.http()
        while True:
            attempt: dict[str, Any] = {"time": time.time(), "status": None, "error": None}
            notification.attempts.append(attempt)
            try:
                answer = await client.post(
                    notification.address,
                    content=b"",
                    headers=sent_headers,
                    timeout=settings.calendar_notification_timeout,
                )
                attempt["status"] = answer.status_code
            except httpx.HTTPError as error:
                attempt["error"] = type(error).__name__
            status = attempt["status"]
            if status in SUCCESS:
                notification.state = "delivered"
                return
            retryable = status in RETRIED or status is None
            if not retryable or len(notification.attempts) >= settings.calendar_notification_attempts:
                notification.state = "failed"
                return
            notification.state = "retrying"
            await asyncio.sleep(settings.calendar_notification_retry_delay * 2 ** (len(notification.attempts) - 1))

    def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        self.tasks.clear()
        client, self.client = self.client, None
        if client is not None:
            with contextlib.suppress(RuntimeError):  # no running loop: nothing is in flight either
                asyncio.get_running_loop().create_task(client.aclose())
