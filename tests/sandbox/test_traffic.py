"""Faults, quotas and the request log, served as configured and visible in the log."""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from googleapiclient.discovery import Resource
from googleapiclient.errors import HttpError

from sandbox.admin_client import SandboxAdmin
from sandbox.process import wait_until
from tests.sandbox.conftest import ADA, CLIENT_ID, CONTACTS, GRACE, Sandbox

People = Callable[[str], Resource]
PEOPLE_PATH = "/v1/people/me/connections"


def call(connections: Resource, **params: Any) -> int:
    """The HTTP status of one `connections.list` call."""
    try:
        connections.list(resourceName="people/me", personFields="names", pageSize=5, **params).execute(num_retries=0)
    except HttpError as error:
        return int(error.resp.status)
    return 200


def statuses(admin: SandboxAdmin, after: int = 0) -> list[int]:
    return [entry["status"] for entry in admin.request_log(after)]


def test_faults_are_served_as_configured_and_logged(admin: SandboxAdmin, people: People, ada_token: str) -> None:
    admin.set_faults([{"path_prefix": PEOPLE_PATH, "status": 503, "times": 2}])
    connections = people(ada_token)

    served = [call(connections) for _ in range(3)]

    log = admin.request_log()
    assert served == [503, 503, 200]
    assert [(e["status"], e["fault"]) for e in log] == [(503, True), (503, True), (200, False)]
    assert log[-1]["account"] == ADA and log[-1]["app"] == CLIENT_ID
    assert all((e["account"], e["app"]) == (ADA, CLIENT_ID) for e in log), "a faulted request names its caller too"


def test_a_fault_can_start_after_skipping_requests(admin: SandboxAdmin, people: People, ada_token: str) -> None:
    admin.set_faults([{"path_prefix": PEOPLE_PATH, "status": 500, "skip": 2, "times": 1}])
    connections = people(ada_token)

    served = [call(connections) for _ in range(4)]

    assert served == [200, 200, 500, 200]


def test_fault_bodies_are_google_errors(admin: SandboxAdmin, people: People, ada_token: str) -> None:
    admin.set_faults([{"path_prefix": PEOPLE_PATH, "status": 500, "times": 1}])

    with pytest.raises(HttpError) as failed:
        people(ada_token).list(resourceName="people/me", personFields="names").execute(num_retries=0)

    assert json.loads(failed.value.content)["error"] == {
        "code": 500,
        "message": "Internal error encountered.",
        "status": "INTERNAL",
    }


def test_a_body_fault_answers_that_body_with_its_status_and_latency(sandbox: Sandbox, ada_token: str) -> None:
    sandbox.admin.set_faults(
        [
            {"path_prefix": PEOPLE_PATH, "latency_ms": 200, "times": 2},
            {"path_prefix": PEOPLE_PATH, "body": "<html>proxy error</html>", "times": 1},
            {"path_prefix": PEOPLE_PATH, "body": '{"error": 1}', "status": 502, "times": 1},
        ]
    )
    headers = {"authorization": f"Bearer {ada_token}"}
    params = {"personFields": "names", "pageSize": 5}
    url = sandbox.url + PEOPLE_PATH

    started = time.monotonic()
    first = httpx.get(url, params=params, headers=headers)
    slow = time.monotonic() - started
    second, third = (httpx.get(url, params=params, headers=headers) for _ in range(2))

    assert (first.status_code, first.text) == (200, "<html>proxy error</html>") and slow >= 0.2
    assert (second.status_code, second.text) == (502, '{"error": 1}')
    assert third.status_code == 200 and "connections" in third.json(), "the People API answers again"
    log = sandbox.admin.request_log()
    assert [(e["status"], e["fault"]) for e in log] == [(200, True), (502, True), (200, False)]


def stdlib_get(url: str, target: str, headers: dict[str, str]) -> bytes:
    """A GET through http.client alone (under httplib2 and urllib), which retries nothing."""
    server = urlsplit(url)
    connection = http.client.HTTPConnection(server.hostname or "", server.port, timeout=10)
    try:
        connection.request("GET", target, headers=headers)
        return connection.getresponse().read()
    finally:
        connection.close()


@pytest.mark.parametrize(
    ("fault", "stdlib_error", "httpx_error"),
    [
        ("reset", ConnectionResetError, httpx.ReadError),
        ("short_body", http.client.IncompleteRead, httpx.RemoteProtocolError),
        ("bad_status_line", http.client.BadStatusLine, httpx.RemoteProtocolError),
    ],
)
def test_a_connection_fault_breaks_the_connection_itself_for_any_client(
    sandbox: Sandbox, ada_token: str, fault: str, stdlib_error: type[Exception], httpx_error: type[Exception]
) -> None:
    sandbox.admin.set_faults([{"path_prefix": PEOPLE_PATH, "connection": fault, "times": 2}])
    headers = {"authorization": f"Bearer {ada_token}"}
    target = f"{PEOPLE_PATH}?personFields=names&pageSize=5"

    with pytest.raises(stdlib_error):
        stdlib_get(sandbox.url, target, headers)
    with pytest.raises(httpx_error):
        httpx.get(sandbox.url + target, headers=headers)
    after = httpx.get(sandbox.url + target, headers=headers)

    assert after.status_code == 200 and "connections" in after.json(), "the People API answers again"
    log = sandbox.admin.request_log()
    assert [(e["status"], e["fault"], e["account"]) for e in log] == [(0, True, ADA), (0, True, ADA), (200, False, ADA)]


def test_429_with_and_without_retry_after(sandbox: Sandbox, ada_token: str) -> None:
    sandbox.admin.set_faults(
        [
            {"path_prefix": PEOPLE_PATH, "status": 429, "retry_after": 7, "times": 1},
            {"path_prefix": PEOPLE_PATH, "status": 429, "times": 1},
        ]
    )
    request = {"params": {"personFields": "names"}, "headers": {"Authorization": f"Bearer {ada_token}"}}

    with_header = httpx.get(sandbox.url + PEOPLE_PATH, **request)
    without = httpx.get(sandbox.url + PEOPLE_PATH, **request)

    for answer in (with_header, without):
        sandbox.validator.check(answer.url.path, answer.status_code, answer.headers["content-type"], answer.content)
        assert answer.status_code == 429 and answer.json()["error"]["status"] == "RESOURCE_EXHAUSTED"
    assert with_header.headers["retry-after"] == "7" and "retry-after" not in without.headers


def test_a_seeded_fault_storm_is_reproducible(admin: SandboxAdmin, people: People, ada_token: str) -> None:
    storm = [{"path_prefix": PEOPLE_PATH, "status": 503, "rate": 0.5}]
    connections = people(ada_token)

    admin.set_faults(storm, seed=11)
    first = [call(connections) for _ in range(16)]
    admin.set_faults(storm, seed=11)
    second = [call(connections) for _ in range(16)]
    admin.set_faults(storm, seed=12)
    third = [call(connections) for _ in range(16)]

    assert first == second and first != third
    assert {200, 503} == set(first)
    assert statuses(admin) == first + second + third


def test_latency_is_added(admin: SandboxAdmin, people: People, ada_token: str) -> None:
    admin.set_faults([{"path_prefix": PEOPLE_PATH, "latency_ms": 300}])

    started = time.monotonic()
    status = call(people(ada_token))

    assert status == 200 and time.monotonic() - started >= 0.3
    assert admin.request_log()[-1]["duration_ms"] >= 300


def test_faults_only_hit_their_path_prefix(sandbox: Sandbox, people: People, ada_token: str) -> None:
    sandbox.admin.set_faults([{"path_prefix": "/token", "status": 503}])

    assert call(people(ada_token)) == 200
    assert httpx.post(sandbox.url + "/token", data={}).status_code == 503


def test_per_user_quota_is_a_sliding_window(admin: SandboxAdmin, people: People) -> None:
    admin.set_quota(per_user=3, window_seconds=1.0)
    ada = people(admin.mint_tokens(ADA, CLIENT_ID, [CONTACTS])["access_token"])
    grace = people(admin.mint_tokens(GRACE, CLIENT_ID, [CONTACTS])["access_token"])

    served = [call(ada) for _ in range(4)]
    other_user = call(grace)
    with pytest.raises(HttpError) as refused:
        ada.list(resourceName="people/me", personFields="names").execute(num_retries=0)

    error = json.loads(refused.value.content)["error"]
    assert served == [200, 200, 200, 429] and other_user == 200
    assert error["status"] == "RESOURCE_EXHAUSTED" and "per minute per user" in error["message"]
    assert error["details"][0]["reason"] == "RATE_LIMIT_EXCEEDED"
    assert wait_until(lambda: call(ada) == 200, timeout=5, what="the window to slide")


def test_per_app_quota_counts_every_user_of_the_app(admin: SandboxAdmin, people: People) -> None:
    admin.set_quota(per_app=2)
    ada = people(admin.mint_tokens(ADA, CLIENT_ID, [CONTACTS])["access_token"])
    grace = people(admin.mint_tokens(GRACE, CLIENT_ID, [CONTACTS])["access_token"])

    served = [call(ada), call(grace), call(grace), call(ada)]

    assert served == [200, 200, 429, 429]
    assert [(e["account"], e["status"]) for e in admin.request_log()][-2:] == [(GRACE, 429), (ADA, 429)]


def test_request_log_redacts_secrets_and_can_be_cleared(sandbox: Sandbox, people: People, ada_token: str) -> None:
    first = people(ada_token).list(resourceName="people/me", personFields="names", pageSize=5).execute()
    httpx.get(
        sandbox.url + PEOPLE_PATH,
        params={"personFields": "names", "pageSize": 5, "pageToken": first["nextPageToken"], "access_token": ada_token},
    )

    log = sandbox.admin.request_log()
    sandbox.admin.clear_log()

    assert "access_token=REDACTED" in log[-1]["query"] and "pageToken=REDACTED" in log[-1]["query"]
    assert all(ada_token not in json.dumps(entry) and first["nextPageToken"] not in json.dumps(entry) for entry in log)
    assert {(e["method"], e["path"], e["account"]) for e in log} == {("GET", PEOPLE_PATH, ADA)}
    assert all(abs(e["time"] - time.time()) < 60 for e in log)
    assert sandbox.admin.request_log() == []


def test_issued_tokens_are_listed(admin: SandboxAdmin) -> None:
    minted = admin.mint_tokens(GRACE, CLIENT_ID, [CONTACTS])

    records = {(t["kind"], t["value"]) for t in admin.tokens(account=GRACE)}

    assert records == {("access", minted["access_token"]), ("refresh", minted["refresh_token"])}
