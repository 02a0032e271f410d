"""Calendar push channels: events.watch and channels.stop through google-api-python-client, and the notifications
the sandbox POSTs to a real HTTP receiver in the test (headers, `sync` first, retries, stopped/expired/dropped)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from email.utils import parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from googleapiclient.discovery import Resource
from googleapiclient.errors import HttpError

from sandbox.admin_client import SandboxAdmin
from tests.conftest import wait_for
from tests.sandbox.conftest import ADA

ZURICH = "Europe/Zurich"


class Server(ThreadingHTTPServer):
    request_queue_size = 128  # the default 5 drops a burst's SYNs, and each costs a 1 s retransmit
    daemon_threads = True


class Receiver:
    """The hub's webhook endpoint stand-in: records each POST, answers `statuses` in turn (then 200)."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.statuses: list[int] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver.lock:
                    receiver.received.append((dict(self.headers.items()), body))
                    status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/webhooks/google_calendar"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def headers(self, channel_id: str | None = None) -> list[dict[str, str]]:
        with self.lock:
            return [h for h, _ in self.received if channel_id in (None, h["X-Goog-Channel-ID"])]


def wait_until(check: Callable[[], Any], what: str) -> Any:
    return wait_for(check, timeout=5, interval=0.01, what=what)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    yield receiver
    receiver.server.shutdown()
    receiver.server.server_close()


@pytest.fixture
def work(admin: SandboxAdmin) -> str:
    return admin.calendar.add_calendar(ADA, "Watched", ZURICH)["id"]


def add_meeting(admin: SandboxAdmin, calendar: str, day: str = "2026-03-04") -> dict[str, Any]:
    start, end = f"{day}T10:00:00", f"{day}T11:00:00"
    fields = {"summary": "Meeting", "start": {"dateTime": start, "timeZone": ZURICH},
              "end": {"dateTime": end, "timeZone": ZURICH}}  # fmt: skip
    return admin.calendar.add_event(ADA, calendar, fields)


def watch(calendar: Resource, calendar_id: str, channel_id: str, address: str, **extra: Any) -> dict[str, Any]:
    body = {"id": channel_id, "type": "web_hook", "address": address, "token": f"secret-{channel_id}", **extra}
    answer: dict[str, Any] = calendar.events().watch(calendarId=calendar_id, body=body).execute(num_retries=0)
    return answer


def test_watch_sends_sync_first_then_exists_for_each_change(
    admin: SandboxAdmin, ada_calendar: Resource, receiver: Receiver, work: str
) -> None:
    opened = time.time()
    channel = watch(ada_calendar, work, "chan-1", receiver.url, params={"ttl": "3600"})
    wait_until(lambda: len(receiver.headers()) == 1, "the sync message")
    add_meeting(admin, work)
    add_meeting(admin, "primary")  # another calendar: no message on this channel
    sync, exists = wait_until(lambda: receiver.headers() if len(receiver.headers()) == 2 else None, "the change")

    assert channel["kind"] == "api#channel" and channel["id"] == "chan-1" and channel["token"] == "secret-chan-1"
    assert (
        channel["resourceUri"]
        == f"https://www.googleapis.com/calendar/v3/calendars/{work.replace('@', '%40')}/events?alt=json"
    )
    assert abs(int(channel["expiration"]) / 1000 - (opened + 3600)) < 5
    assert sync["X-Goog-Resource-State"] == "sync" and sync["X-Goog-Message-Number"] == "1"
    assert exists["X-Goog-Resource-State"] == "exists" and int(exists["X-Goog-Message-Number"]) > 1
    for headers in (sync, exists):
        assert headers["X-Goog-Channel-ID"] == "chan-1" and headers["X-Goog-Channel-Token"] == "secret-chan-1"
        assert headers["X-Goog-Resource-ID"] == channel["resourceId"]
        assert headers["X-Goog-Resource-URI"] == channel["resourceUri"]
        assert (
            parsedate_to_datetime(headers["X-Goog-Channel-Expiration"]).timestamp()
            == int(channel["expiration"]) // 1000
        )
    assert [b for _, b in receiver.received] == [b"", b""]
    records = admin.calendar.notifications(channel_id="chan-1")
    assert [(n["resource_state"], n["state"]) for n in records] == [("sync", "delivered"), ("exists", "delivered")]


def test_stopped_and_expired_channels_send_nothing(
    admin: SandboxAdmin, ada_calendar: Resource, receiver: Receiver, work: str
) -> None:
    stopped = watch(ada_calendar, work, "stopped", receiver.url)
    watch(ada_calendar, work, "expired", receiver.url)
    watch(ada_calendar, work, "witness", receiver.url)
    wait_until(lambda: len(receiver.headers()) == 3, "three sync messages")

    answer = ada_calendar.channels().stop(body={"id": "stopped", "resourceId": stopped["resourceId"]}).execute()
    admin.calendar.expire_channel("expired")
    add_meeting(admin, work)
    wait_until(lambda: receiver.headers("witness")[1:], "the witness's change message")
    with pytest.raises(HttpError) as again:
        ada_calendar.channels().stop(body={"id": "stopped", "resourceId": stopped["resourceId"]}).execute()

    assert answer == ""  # 204 No Content
    assert [h["X-Goog-Resource-State"] for h in receiver.headers("stopped")] == ["sync"]
    assert [h["X-Goog-Resource-State"] for h in receiver.headers("expired")] == ["sync"]
    assert (
        again.value.resp.status == 404 and json.loads(again.value.content)["error"]["errors"][0]["reason"] == "notFound"
    )
    live = {c["id"]: (c["live"], c["stopped"] is not None) for c in admin.calendar.channels(account=ADA)}
    assert live == {"stopped": (False, True), "expired": (False, False), "witness": (True, False)}
    assert admin.calendar.notify("stopped", count=3) == []


def test_dropped_notifications_are_recorded_and_never_sent(
    admin: SandboxAdmin, ada_calendar: Resource, receiver: Receiver, work: str
) -> None:
    admin.calendar.settings(calendar_drop_notifications=True)
    watch(ada_calendar, work, "dropped", receiver.url)
    add_meeting(admin, work)

    records = admin.calendar.notifications(channel_id="dropped")

    assert [(n["resource_state"], n["state"], n["attempts"]) for n in records] == [
        ("sync", "dropped", []),
        ("exists", "dropped", []),
    ]
    assert receiver.headers() == []


def test_a_5xx_answer_is_retried_with_backoff_and_a_4xx_is_not(
    admin: SandboxAdmin, ada_calendar: Resource, receiver: Receiver, work: str
) -> None:
    admin.calendar.settings(calendar_notification_retry_delay=0.05)
    receiver.statuses = [503, 200, 404]
    watch(ada_calendar, work, "flaky", receiver.url)
    wait_until(lambda: admin.calendar.notifications(channel_id="flaky")[0]["state"] == "delivered", "the retried sync")
    add_meeting(admin, work)
    failed = wait_until(
        lambda: [n for n in admin.calendar.notifications(channel_id="flaky") if n["state"] == "failed"], "the 404"
    )

    sync = admin.calendar.notifications(channel_id="flaky")[0]
    assert [a["status"] for a in sync["attempts"]] == [503, 200]
    assert [a["status"] for a in failed[0]["attempts"]] == [404]
    assert [h["X-Goog-Message-Number"] for h in receiver.headers()][:2] == ["1", "1"]


def test_a_burst_of_changes_sends_increasing_message_numbers(
    admin: SandboxAdmin, ada_calendar: Resource, receiver: Receiver, work: str
) -> None:
    watch(ada_calendar, work, "burst", receiver.url)
    sent = admin.calendar.notify("burst", count=20)
    wait_until(lambda: len(receiver.headers("burst")) == 21, "21 messages")

    numbers = [n["message_number"] for n in sent]
    assert len(sent) == 20 and numbers == sorted(set(numbers)) and numbers[0] > 1
    assert sorted(int(h["X-Goog-Message-Number"]) for h in receiver.headers("burst"))[1:] == numbers


def test_watch_refuses_a_reused_channel_id_and_http_when_https_is_required(
    admin: SandboxAdmin, ada_calendar: Resource, receiver: Receiver, work: str
) -> None:
    watch(ada_calendar, work, "once", receiver.url)
    with pytest.raises(HttpError) as reused:
        watch(ada_calendar, work, "once", receiver.url)
    admin.calendar.settings(calendar_require_https=True)
    with pytest.raises(HttpError) as plain_http:
        watch(ada_calendar, work, "plain", receiver.url)

    assert reused.value.resp.status == 400
    assert json.loads(reused.value.content)["error"]["errors"][0]["reason"] == "channelIdNotUnique"
    assert plain_http.value.resp.status == 400
    assert json.loads(plain_http.value.content)["error"]["errors"][0]["reason"] == "push.webhookUrlNotHttps"


def test_a_removed_calendar_sends_not_exists(
    admin: SandboxAdmin, ada_calendar: Resource, receiver: Receiver, work: str
) -> None:
    watch(ada_calendar, work, "gone", receiver.url)
    wait_until(lambda: receiver.headers("gone"), "the sync message")  # deliveries run concurrently
    admin.calendar.remove_calendar(ADA, work)
    states = wait_until(lambda: [h["X-Goog-Resource-State"] for h in receiver.headers("gone")][1:], "not_exists")

    assert states == ["not_exists"]
