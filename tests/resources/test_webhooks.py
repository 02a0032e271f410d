"""The webhook path through a connector installed by entry point: a real hub over HTTP, a real worker, its own
Redis. Signed POSTs are stored once and land once; refused ones store nothing; what no connection chose is
ignored; provider outages are retried; a failed delivery is listed and retried from the CLI; a killed worker or
a stopped Redis loses nothing; finished payloads are purged; /metrics shows the inbox."""

from __future__ import annotations

import hashlib
import hmac
import json
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update

from core.models import utcnow
from sync.celery_app import make_celery
from sync.models import SyncRun
from tests.conftest import ROOT, Worker, clean_environ, wait_for
from tests.google.conftest import GoogleHub
from tests.resources.conftest import VERIFY_TOKEN, BooksHub, books_env
from tests.resources.provider import BooksProvider
from tests.servers import free_port, kill_group, redis_server_binary, spawn
from webhooks.models import WebhookDelivery

SLUG = "loopback_books"
CAP = 4096
METRICS_TOKEN = "metrics-token-for-the-webhook-tests"
WEBHOOK_ENV = {
    "SYNCHUB_LOOPBACK_BOOKS__WEBHOOK_MAX_BODY_BYTES": str(CAP),
    "SYNCHUB_WEBHOOKS__CLAIM_SECONDS": "2",
    "SYNCHUB_WEBHOOKS__GRACE_SECONDS": "1",
    "SYNCHUB_WEBHOOKS__MAX_ATTEMPTS": "4",
    "SYNCHUB_METRICS__TOKEN": METRICS_TOKEN,
    "SYNCHUB_CELERY__TASK_TIME_LIMIT": "6",
    "SYNCHUB_CELERY__TASK_SOFT_TIME_LIMIT": "5",
    "SYNCHUB_CELERY__SYNC_TIME_BUDGET": "3",
    "SYNCHUB_CELERY__MAX_COUNTDOWN": "2",
    "SYNCHUB_CELERY__VISIBILITY_TIMEOUT": "10",
    "SYNCHUB_CELERY__RUN_LOCK_SECONDS": "2",
}


class OwnRedis:
    """A redis-server on a fixed loopback port that a test may stop and start again at the same address."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.port = folder, free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> OwnRedis:
        argv = [redis_server_binary(), "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        with (self.folder / "redis.log").open("ab") as log:
            self.process = spawn([*argv, "--appendonly", "no", "--dir", str(self.folder)], stdout=log, stderr=log)
        import redis

        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.2)
        wait_for(lambda: _pings(client), timeout=10, what="redis-server to answer")
        client.close()
        return self

    def stop(self) -> None:
        if self.process is not None:
            kill_group(self.process, signal.SIGKILL)
            self.process = None


def _pings(client: Any) -> bool:
    try:
        return bool(client.ping())
    except Exception:
        return False


@dataclass
class Inbox:
    books: BooksHub
    browser: httpx.Client
    connection_id: uuid.UUID
    book: str
    worker: Worker
    redis: OwnRedis

    @property
    def hub(self) -> GoogleHub:
        return self.books.hub

    @property
    def provider(self) -> BooksProvider:
        return self.books.provider

    @property
    def url(self) -> str:
        return f"{self.hub.url}/webhooks/{SLUG}"

    def sign(self, body: bytes) -> str:
        return "sha256=" + hmac.new(self.hub.client_secret.encode(), body, hashlib.sha256).hexdigest()

    def post(self, changes: list[dict[str, Any]], **kwargs: Any) -> httpx.Response:
        body = json.dumps({"changes": changes}).encode()
        return httpx.post(self.url, content=body, headers={"x-books-signature": self.sign(body)}, timeout=30, **kwargs)

    def deliveries(self, keys: list[str]) -> dict[str, WebhookDelivery]:
        with self.hub.sessions() as session:
            rows = session.scalars(
                select(WebhookDelivery).where(WebhookDelivery.connector == SLUG, WebhookDelivery.dedupe_key.in_(keys))
            ).all()
        return {row.dedupe_key: row for row in rows}

    def settled(self, keys: list[str], timeout: float = 60) -> dict[str, WebhookDelivery]:
        """Wait until every one of `keys` is stored and no longer pending."""

        def done() -> dict[str, WebhookDelivery] | None:
            found = self.deliveries(keys)
            return found if len(found) == len(keys) and all(d.status != "pending" for d in found.values()) else None

        result: dict[str, WebhookDelivery] = wait_for(done, timeout=timeout, interval=0.05, what="deliveries")
        return result

    def contact_ids(self) -> list[str]:
        """External ids of the connection's contacts, with repeats (a doubled record shows twice)."""
        return [c["external_id"] for c in self.hub.contacts(self.browser, self.connection_id)]

    def person_fetches(self, person_ids: list[str]) -> int:
        wanted = {f"/people/{p}" for p in person_ids}
        with self.provider.lock:
            return sum(1 for call in self.provider.calls if call.path in wanted)

    def send(self, task: str) -> None:
        make_celery(self.hub.settings).send_task(task)

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "hub", "webhooks", *args],
            env=clean_environ(self.hub.env),
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
        )


def changes(book: str, people: list[str], kind: str = "person") -> list[dict[str, Any]]:
    return [{"id": f"chg-{uuid.uuid4().hex}", "book": book, "person": p, "kind": kind} for p in people]


def keys(batch: list[dict[str, Any]]) -> list[str]:
    return [str(change["id"]) for change in batch]


@pytest.fixture(scope="module")
def inbox(
    google_hub_factory: Callable[..., GoogleHub], provider: BooksProvider, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Inbox]:
    """One hub on a Redis of its own (no other module's worker takes its tasks, and this module may stop it), a
    worker for every queue, and a connection that chose the book "Inbox"."""
    own = OwnRedis(tmp_path_factory.mktemp("webhook-redis")).start()
    hub = google_hub_factory(**books_env(provider.url, SYNCHUB_REDIS_URL=own.url, **WEBHOOK_ENV))
    worker = Worker(hub.env, queues="webhooks,sync,maintenance", concurrency=2).start()
    books = BooksHub(hub, provider)
    browser, connection_id = books.connect()
    book = provider.add_book("Inbox", people=1)
    books.select(browser, connection_id, "Inbox")
    state = Inbox(books, browser, connection_id, book, worker, own)
    yield state
    state.worker.stop(signal.SIGKILL)  # nothing of this module's Redis outlives it
    own.stop()


@pytest.fixture(autouse=True)
def healthy_provider(provider: BooksProvider) -> None:
    with provider.lock:
        provider.failures.clear()
    provider.person_delay = 0.0


def test_a_signed_batch_is_stored_once_and_a_redelivery_lands_nothing_twice(inbox: Inbox) -> None:
    people = inbox.provider.person_ids(inbox.book, 20)
    batch = changes(inbox.book, people)

    first = inbox.post(batch)
    assert first.status_code == 200, first.text
    assert first.json() == {"received": 20, "new": 20}
    done = inbox.settled(keys(batch))
    assert {d.status for d in done.values()} == {"processed"} and {d.routed for d in done.values()} == {1}

    again = inbox.post(batch)
    assert again.json() == {"received": 20, "new": 0}
    stored = inbox.contact_ids()
    assert all(stored.count(p) == 1 for p in people)
    assert inbox.person_fetches(people) == 20


def test_the_workers_log_names_each_delivery_it_processed(inbox: Inbox) -> None:
    """Operators follow a delivery by its id: the worker's JSON line for each processed delivery carries it."""
    batch = changes(inbox.book, inbox.provider.person_ids(inbox.book, 3))
    assert inbox.post(batch).status_code == 200
    ids = {d.id for d in inbox.settled(keys(batch)).values()}

    def logged() -> list[dict[str, Any]] | None:
        lines = [json.loads(line) for line in inbox.worker.output().splitlines() if line.startswith("{")]
        mine = [line for line in lines if line.get("delivery_id") in ids]
        return (
            mine
            if {line["delivery_id"] for line in mine if line["message"] == "webhook delivery processed"} == ids
            else None
        )

    lines = wait_for(logged, timeout=60, interval=0.1, what="the worker to log each delivery")
    assert all(line["connector"] == SLUG for line in lines), lines


def test_refused_posts_store_nothing(inbox: Inbox) -> None:
    batch = changes(inbox.book, inbox.provider.person_ids(inbox.book, 2))
    body = json.dumps({"changes": batch}).encode()
    forged = "sha256=" + hmac.new(b"not-the-client-secret", body, hashlib.sha256).hexdigest()

    assert httpx.post(inbox.url, content=body, headers={"x-books-signature": forged}).status_code == 403
    assert httpx.post(inbox.url, content=body).status_code == 403
    tampered = body.replace(b"person", b"persoN", 1)
    assert httpx.post(inbox.url, content=tampered, headers={"x-books-signature": inbox.sign(body)}).status_code == 403
    for malformed in (b"{not json", json.dumps({"changes": "all"}).encode(), json.dumps({"changes": [{}]}).encode()):
        answer = httpx.post(inbox.url, content=malformed, headers={"x-books-signature": inbox.sign(malformed)})
        assert answer.status_code == 400, malformed

    long_id = [{**batch[0], "id": "x" * 256}]
    nul = [{**batch[1], "person": "people/\u0000"}]
    for unstorable in (long_id, nul):
        assert inbox.post(unstorable).status_code == 400, unstorable
    assert inbox.deliveries(["x" * 256]) == {}

    padded = json.dumps({"changes": batch, "pad": "x" * CAP}).encode()
    signature = {"x-books-signature": inbox.sign(padded)}
    assert httpx.post(inbox.url, content=padded, headers=signature).status_code == 413

    def chunked() -> Iterator[bytes]:
        for start in range(0, len(padded), 1000):
            yield padded[start : start + 1000]

    answer = httpx.post(inbox.url, content=chunked(), headers=signature)
    assert answer.status_code == 413 and "content-length" not in answer.request.headers
    assert httpx.post(f"{inbox.hub.url}/webhooks/nobody", content=body).status_code == 404

    assert inbox.deliveries(keys(batch)) == {}


def test_changes_no_connection_chose_are_ignored_and_the_handshake_echoes_its_challenge(inbox: Inbox) -> None:
    elsewhere = changes("https://books.loopback.test/nobody/chose/this/", ["people/x-1"])
    other_kind = changes(inbox.book, ["people/x-2"], kind="note")
    book_changed = changes(inbox.book, [""], kind="book")
    answer = inbox.post(elsewhere + other_kind + book_changed)
    assert answer.json() == {"received": 3, "new": 3}

    done = inbox.settled(keys(elsewhere + other_kind + book_changed))
    assert [(done[k].status, done[k].routed) for k in keys(elsewhere + other_kind)] == [("ignored", 0)] * 2
    assert (done[keys(book_changed)[0]].status, done[keys(book_changed)[0]].routed) == ("processed", 1)
    with inbox.hub.sessions() as session:
        triggers = session.scalars(select(SyncRun.trigger).where(SyncRun.connection_id == inbox.connection_id))
        assert "webhook" in set(triggers)

    shake = httpx.get(inbox.url, params={"token": VERIFY_TOKEN, "challenge": "c-1158201444"})
    assert (shake.status_code, shake.text) == (200, "c-1158201444")
    assert httpx.get(inbox.url, params={"token": "wrong-token-wrong-token", "challenge": "c"}).status_code == 403
    assert httpx.get(inbox.url, params={"challenge": "c"}).status_code == 403
    assert httpx.get(f"{inbox.hub.url}/webhooks/nobody", params={"token": VERIFY_TOKEN}).status_code == 404


def test_provider_outages_are_retried_and_a_missing_person_fails_until_an_operator_retries(inbox: Inbox) -> None:
    people = inbox.provider.person_ids(inbox.book, 1)
    with inbox.provider.lock:
        inbox.provider.failures.extend([503, 429])
    retried = changes(inbox.book, people)
    inbox.post(retried)
    done = inbox.settled(keys(retried))
    assert done[keys(retried)[0]].status == "processed"
    assert inbox.person_fetches(people) == 3
    assert people[0] in inbox.contact_ids()

    missing = changes(inbox.book, ["people/not-yet-1"])
    inbox.post(missing)
    failed = inbox.settled(keys(missing))[keys(missing)[0]]
    assert failed.status == "failed" and "404" in (failed.error or "")

    listing = inbox.cli("list", "--status", "failed")
    assert listing.returncode == 0, listing.stderr
    assert str(failed.id) in listing.stdout.split()

    inbox.provider.books[inbox.book].people.append(
        {"id": "people/not-yet-1", "name": "late", "email": "late@books.test", "seq": 10**6}
    )
    retry = inbox.cli("retry", str(failed.id))
    assert retry.returncode == 0, retry.stderr
    assert inbox.settled(keys(missing))[keys(missing)[0]].status == "processed"
    assert inbox.contact_ids().count("people/not-yet-1") == 1


def test_a_worker_killed_mid_batch_lands_every_change_once(inbox: Inbox) -> None:
    people = inbox.provider.person_ids(inbox.book, 12)
    inbox.provider.person_delay = 0.15
    batch = changes(inbox.book, people)
    assert inbox.post(batch).json()["new"] == 12
    wait_for(lambda: inbox.person_fetches(people) >= 4, timeout=60, what="the batch to be under way")
    inbox.worker.stop(signal.SIGKILL)
    inbox.provider.person_delay = 0.0
    assert {d.status for d in inbox.deliveries(keys(batch)).values()} >= {"pending"}

    inbox.worker = Worker(inbox.hub.env, queues="webhooks,sync,maintenance", concurrency=2).start()

    def swept() -> bool:
        inbox.send("synchub.webhooks.sweep")
        return all(d.status != "pending" for d in inbox.deliveries(keys(batch)).values())

    wait_for(swept, timeout=60, interval=1.0, what="the sweeper to hand the batch to the new worker")
    assert {d.status for d in inbox.deliveries(keys(batch)).values()} == {"processed"}
    stored = inbox.contact_ids()
    assert [stored.count(p) for p in people] == [1] * 12


def test_with_redis_stopped_a_post_is_stored_or_refused_and_the_sweeper_lands_it(inbox: Inbox) -> None:
    people = inbox.provider.person_ids(inbox.book, 3)
    batch = changes(inbox.book, people)
    inbox.redis.stop()
    try:
        answer = inbox.post(batch)
    finally:
        inbox.redis.start()
    assert answer.status_code in (200, 503), answer.text
    if answer.status_code == 503:  # the provider sends it again
        assert inbox.post(batch).status_code == 200

    def swept() -> bool:
        if inbox.worker.process is not None and inbox.worker.process.poll() is not None:
            # A Celery worker whose broker vanished while it acked a task exits (kombu 5's Redis transport); a
            # deployment's supervisor starts it again, as this does. What is checked is that nothing is lost.
            inbox.worker = Worker(inbox.hub.env, queues="webhooks,sync,maintenance", concurrency=2).start()
        inbox.send("synchub.webhooks.sweep")
        found = inbox.deliveries(keys(batch))
        return len(found) == 3 and all(d.status == "processed" for d in found.values())

    wait_for(swept, timeout=60, interval=1.0, what="the sweeper to land the deliveries")
    stored = inbox.contact_ids()
    assert [stored.count(p) for p in people] == [1] * 3


def test_metrics_show_the_inbox_and_old_payloads_are_purged(inbox: Inbox) -> None:
    people = inbox.provider.person_ids(inbox.book, 1)
    inbox.provider.person_delay = 1.5
    slow = changes(inbox.book, people)
    inbox.post(slow)
    wait_for(lambda: inbox.person_fetches(people) >= 1, timeout=60, what="the slow delivery to be claimed")

    scraped = httpx.get(f"{inbox.hub.url}/metrics", headers={"authorization": f"Bearer {METRICS_TOKEN}"})
    assert scraped.status_code == 200
    gauges = {
        line.split(" ")[0]: float(line.split(" ")[1])
        for line in scraped.text.splitlines()
        if line.startswith("synchub_webhook_")
    }
    with inbox.hub.sessions() as session:
        statuses = list(session.scalars(select(WebhookDelivery.status)))
    for status in ("pending", "processed", "ignored", "failed"):
        assert gauges[f'synchub_webhook_deliveries{{status="{status}"}}'] == statuses.count(status)
    assert statuses.count("pending") >= 1
    assert 0 < gauges["synchub_webhook_oldest_pending_seconds"] < 30
    inbox.settled(keys(slow))

    finished = changes(inbox.book, inbox.provider.person_ids(inbox.book, 1))
    inbox.provider.person_delay = 0.0
    inbox.post(finished)
    inbox.settled(keys(finished))
    with inbox.hub.sessions() as session, session.begin():
        session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.dedupe_key.in_(keys(finished)))
            .values(finished_at=utcnow() - timedelta(days=8))
        )
    inbox.send("synchub.maintenance.purge_webhooks")
    wait_for(lambda: inbox.deliveries(keys(finished))[keys(finished)[0]].payload is None, timeout=60, what="the purge")
    assert inbox.deliveries(keys(slow))[keys(slow)[0]].payload is not None
    assert inbox.post(finished).json() == {"received": 1, "new": 0}
