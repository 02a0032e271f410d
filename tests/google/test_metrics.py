"""Operators' metrics move by exactly what happened: the worker pool's provider calls, throttle waits and token
refreshes on its own port, and the API's runs and queue depths on its token-guarded /metrics."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from sync.celery_app import make_celery
from tests.conftest import Worker, wait_for
from tests.google.conftest import PAGE_SIZE, GoogleHub
from tests.servers import free_port, redis_server

PEOPLE = "/v1/people"
CONNECTOR = "google_contacts"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@dataclass
class Scraped:
    hub: GoogleHub
    worker_url: str
    token: str

    def worker(self) -> Samples:
        return parsed(httpx.get(self.worker_url, timeout=10))

    def api(self) -> Samples:
        return parsed(httpx.get(f"{self.hub.url}/metrics", headers={"authorization": f"Bearer {self.token}"}))


def parsed(response: httpx.Response) -> Samples:
    assert response.status_code == 200, response.text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def moved(before: Samples, after: Samples, name: str, **labels: str) -> float:
    key = (name, frozenset(labels.items()))
    return after.get(key, 0.0) - before.get(key, 0.0)


@pytest.fixture(scope="module")
def own_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Redis of this module's own: a message an earlier module left queued (a retry's countdown) would otherwise
    reach this module's worker, and its calls would move the counters these tests read exactly."""
    with redis_server(tmp_path_factory.mktemp("metrics-redis")) as url:
        yield url


@pytest.fixture(scope="module")
def scraped(google_hub_factory: Callable[..., GoogleHub], own_redis: str) -> Iterator[Scraped]:
    token = secrets.token_urlsafe(32)
    hub = google_hub_factory(SYNCHUB_METRICS__TOKEN=token, SYNCHUB_REDIS_URL=own_redis)
    port = free_port()
    worker = Worker(hub.env, queues="sync,maintenance", concurrency=2, metrics_port=port).start()
    url = f"http://127.0.0.1:{port}/metrics"

    def serving() -> bool:
        try:
            return httpx.get(url, timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(serving, what="the worker's metrics port")
    yield Scraped(hub, url, token)
    worker.stop()


def test_a_sync_moves_each_counter_by_what_happened(scraped: Scraped) -> None:
    worker_before, api_before = scraped.worker(), scraped.api()
    mark = scraped.hub.log_mark()
    run, _, account = scraped.hub.first_sync("metrics-sync", 3 * PAGE_SIZE, [])
    assert run["status"] == "succeeded", run
    served = scraped.hub.people_calls(account, after=mark)
    worker_after, api_after = scraped.worker(), scraped.api()

    calls = "synchub_provider_calls_total"
    assert moved(worker_before, worker_after, calls, connector=CONNECTOR, code="2xx") == len(served) == 3
    assert moved(worker_before, worker_after, calls, connector=CONNECTOR, code="429") == 0
    assert (
        moved(worker_before, worker_after, "synchub_throttle_waits_total", connector=CONNECTOR, cause="provider") == 0
    )
    assert moved(worker_before, worker_after, "synchub_token_refreshes_total", outcome="ok") == 0
    assert moved(api_before, api_after, "synchub_runs", status="succeeded", capability="contacts") == 1
    assert moved(api_before, api_after, "synchub_runs", status="failed", capability="contacts") == 0


def test_a_throttled_call_moves_the_429_and_throttle_counters_by_one(scraped: Scraped) -> None:
    worker_before, api_before = scraped.worker(), scraped.api()
    fault = {"path_prefix": PEOPLE, "status": 429, "retry_after": 1, "skip": 1, "times": 1}
    run, _, _ = scraped.hub.first_sync("metrics-429", 3 * PAGE_SIZE, [fault])
    assert run["status"] == "succeeded", run
    worker_after, api_after = scraped.worker(), scraped.api()

    calls = "synchub_provider_calls_total"
    assert moved(worker_before, worker_after, calls, connector=CONNECTOR, code="429") == 1
    assert moved(worker_before, worker_after, calls, connector=CONNECTOR, code="2xx") == 3
    assert (
        moved(worker_before, worker_after, "synchub_throttle_waits_total", connector=CONNECTOR, cause="provider") == 1
    )
    assert moved(api_before, api_after, "synchub_runs", status="succeeded", capability="contacts") == 1


def test_a_refused_token_counts_one_refresh(scraped: Scraped) -> None:
    hub = scraped.hub
    run, connection_id, account = hub.first_sync("metrics-refresh", PAGE_SIZE, [])
    assert run["status"] == "succeeded", run
    hub.admin.expire_access_tokens(account, hub.client_id)  # the stored token still looks fresh: a call gets 401
    worker_before = scraped.worker()
    assert hub.sync_now(hub.browser(user="metrics-refresh"), connection_id)["status"] == "succeeded"
    worker_after = scraped.worker()

    assert moved(worker_before, worker_after, "synchub_provider_calls_total", connector=CONNECTOR, code="401") == 1
    assert moved(worker_before, worker_after, "synchub_token_refreshes_total", outcome="ok") == 1
    assert moved(worker_before, worker_after, "synchub_token_refreshes_total", outcome="revoked") == 0


def test_a_revoked_grant_counts_one_failed_refresh_and_one_failed_run(scraped: Scraped) -> None:
    """A refresh's failure is counted, not only its success: the grant is revoked at Google, the run's call gets 401,
    its one refresh is refused, and the run fails asking to reconnect."""
    hub = scraped.hub
    run, connection_id, account = hub.first_sync("metrics-revoked", PAGE_SIZE, [])
    assert run["status"] == "succeeded", run
    hub.admin.revoke_grant(account, hub.client_id)
    worker_before, api_before = scraped.worker(), scraped.api()
    failed = hub.sync_now(hub.browser(user="metrics-revoked"), connection_id)
    assert failed["status"] == "failed" and "reconnect" in failed["error"], failed
    worker_after, api_after = scraped.worker(), scraped.api()

    refreshes = "synchub_token_refreshes_total"
    assert moved(worker_before, worker_after, refreshes, outcome="revoked") == 1
    assert moved(worker_before, worker_after, refreshes, outcome="ok") == 0
    assert moved(worker_before, worker_after, refreshes, outcome="failed") == 0
    assert moved(worker_before, worker_after, "synchub_provider_calls_total", connector=CONNECTOR, code="2xx") == 0
    assert moved(api_before, api_after, "synchub_runs", status="failed", capability="contacts") == 1
    assert moved(api_before, api_after, "synchub_runs", status="succeeded", capability="contacts") == 0


def test_queue_depth_counts_a_waiting_task(scraped: Scraped) -> None:
    celery = make_celery(scraped.hub.settings)
    before = scraped.api()
    celery.send_task("synchub.webhooks.metrics_probe")  # nothing here consumes the webhooks queue
    try:
        after = scraped.api()
    finally:
        with celery.connection_for_write() as connection:
            connection.default_channel.queue_purge("webhooks")
    assert moved(before, after, "synchub_queue_depth", queue="webhooks") == 1
    assert moved(before, after, "synchub_queue_depth", queue="sync") == 0


def test_metrics_answer_only_the_bearer_of_the_token(
    scraped: Scraped, google_hub_factory: Callable[..., GoogleHub]
) -> None:
    url = f"{scraped.hub.url}/metrics"
    assert httpx.get(url).status_code == 401
    assert httpx.get(url, headers={"authorization": f"Bearer {scraped.token}x"}).status_code == 401
    assert httpx.get(url, headers={"authorization": f"Basic {scraped.token}"}).status_code == 401
    unset = google_hub_factory()
    assert httpx.get(f"{unset.url}/metrics", headers={"authorization": f"Bearer {scraped.token}"}).status_code == 404
