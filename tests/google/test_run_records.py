"""A run's record tells the truth: its API calls are the provider's own count, its progress reaches its total,
and a run that finishes a full pass says so, even when an earlier run began that pass."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from sandbox.admin_client import FaultRule, SandboxAdmin
from tests.conftest import wait_for
from tests.google import truth
from tests.google.conftest import CONTACTS_SCOPE, PAGE_SIZE, GoogleHub, new_account

PEOPLE = "/v1/people"
Prepare = Callable[[SandboxAdmin, str, str], None]


def expire_access_tokens(admin: SandboxAdmin, account: str, client_id: str) -> None:
    """The stored token still looks fresh to the hub, so its next call is refused (401) and refreshes."""
    admin.expire_access_tokens(account, client_id)


def withdraw_contacts(admin: SandboxAdmin, account: str, client_id: str) -> None:
    """The user unticks contacts at Google: the next call answers 403 scope insufficient."""
    admin.narrow_grant(account, client_id, remove=[CONTACTS_SCOPE])


def nothing(admin: SandboxAdmin, account: str, client_id: str) -> None:
    return None


@pytest.mark.parametrize(
    ("faults", "faulted", "status"),
    [
        pytest.param([], 0, "succeeded", id="clean"),
        pytest.param([{"path_prefix": PEOPLE, "status": 503, "skip": 1, "times": 2}], 2, "succeeded", id="5xx"),
        pytest.param(
            [{"path_prefix": PEOPLE, "status": 429, "retry_after": 1, "skip": 1, "times": 1}], 1, "succeeded", id="429"
        ),
    ],
)
def test_api_calls_of_a_first_sync_are_the_providers_count(
    google_hub: GoogleHub, faults: list[FaultRule], faulted: int, status: str
) -> None:
    mark = google_hub.log_mark()
    run, _, account = google_hub.first_sync("calls", 3 * PAGE_SIZE, faults)
    assert run["status"] == status, run
    served = google_hub.people_calls(account, after=mark)
    assert sum(e["fault"] for e in served) == faulted, "the fault happened as planned"
    assert run["api_calls"] == len(served) == 3 + faulted


@pytest.mark.parametrize(
    ("prepare", "run_status", "answers"),
    [
        pytest.param(nothing, "succeeded", [200], id="quiet"),
        pytest.param(expire_access_tokens, "succeeded", [401, 200], id="401-refresh"),
        pytest.param(withdraw_contacts, "failed", [403], id="403-scope"),
    ],
)
def test_api_calls_of_a_later_sync_are_the_providers_count(
    google_hub: GoogleHub, prepare: Prepare, run_status: str, answers: list[int]
) -> None:
    first, connection_id, account = google_hub.first_sync("later-calls", 2 * PAGE_SIZE, [])
    assert first["status"] == "succeeded"
    prepare(google_hub.admin, account, google_hub.client_id)
    mark = google_hub.log_mark()
    run = google_hub.sync_now(google_hub.browser(user="later-calls"), connection_id)
    assert run["status"] == run_status, run
    served = google_hub.people_calls(account, after=mark)
    assert [e["status"] for e in served] == answers
    assert run["api_calls"] == len(served)


def test_an_incremental_run_with_deletions_reaches_its_total(google_hub: GoogleHub) -> None:
    _, connection_id, account = google_hub.first_sync("progress", 60, [])
    admin, browser = google_hub.admin, google_hub.browser(user="progress")
    names = sorted(c["external_id"] for c in google_hub.contacts(browser, connection_id))
    for name in names[:3]:
        admin.delete_contact(account, name)
    admin.update_contact(account, names[3], {"names": [{"givenName": "Lise", "familyName": "Meitner"}]})
    admin.add_contact(account, {"names": [{"givenName": "Chien-Shiung", "familyName": "Wu"}]})

    run = google_hub.sync_now(browser, connection_id)
    assert run["status"] == "succeeded" and run["full_sync"] is False
    assert run["counts"] == {"created": 1, "updated": 1, "deleted": 3}
    assert run["progress"] == {"done": 5, "total": 5}, "every item Google listed, the deleted ones too"


def test_a_full_pass_that_loses_a_contact_midway_reaches_its_total(google_hub: GoogleHub) -> None:
    admin, account = google_hub.admin, new_account(google_hub.admin, contacts=4 * PAGE_SIZE)
    last = list(truth.people(admin, account, google_hub.client_id))[-1]
    browser = google_hub.browser(user="shrinking")
    admin.set_faults([{"path_prefix": PEOPLE, "status": None, "rate": 1.0, "latency_ms": 500}])
    try:
        connection_id = google_hub.connect(browser, account)
        at_work = wait_for(
            lambda: (r := google_hub.capability(browser, connection_id)["last_run"]) and r["progress"]["done"] and r,
            what="the first page to commit",
        )
        assert at_work["progress"]["done"] <= 2 * PAGE_SIZE and at_work["progress"]["total"] == 4 * PAGE_SIZE
        admin.delete_contact(account, last)
        run = google_hub.wait_run(browser, connection_id)
    finally:
        admin.clear_faults()
    assert run["status"] == "succeeded" and run["counts"]["created"] == 4 * PAGE_SIZE - 1
    assert run["progress"] == {"done": 4 * PAGE_SIZE - 1, "total": 4 * PAGE_SIZE - 1}


def test_a_run_that_finishes_a_full_pass_an_earlier_run_began_records_a_full_sync(google_hub: GoogleHub) -> None:
    unreadable = '{"connections": [{"resourceName": 7}], "nextPageToken": "x"}'
    mark = google_hub.log_mark()
    failed, connection_id, account = google_hub.first_sync(
        "resumer", 3 * PAGE_SIZE, [{"path_prefix": PEOPLE, "skip": 1, "times": 1, "body": unreadable}]
    )
    assert failed["status"] == "failed" and failed["full_sync"] is True
    assert failed["api_calls"] == len(google_hub.people_calls(account, after=mark)) == 2

    mark = google_hub.log_mark()
    run = google_hub.sync_now(google_hub.browser(user="resumer"), connection_id)
    assert run["id"] != failed["id"] and run["status"] == "succeeded"
    assert run["full_sync"] is True
    served = google_hub.people_calls(account, after=mark)
    assert [("pageToken=" in e["query"], e["status"]) for e in served] == [(True, 200)] * 2, "resumed at page 2"
    assert run["api_calls"] == 2
    assert run["counts"]["created"] == 2 * PAGE_SIZE
    assert run["progress"] == {"done": 3 * PAGE_SIZE, "total": 3 * PAGE_SIZE}, "the pass's progress, not the run's"
