"""Pages Google should never send, broken connections and forgotten sync tokens, met for real in a sync."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from typing import Any

import pytest

from sync.models import SyncRun
from tests.conftest import wait_for
from tests.google import truth
from tests.google.conftest import PAGE_SIZE, GoogleHub, new_account

ACTIVE = {"queued", "running", "waiting"}
EMMY = {"names": [{"givenName": "Emmy", "familyName": "Noether"}], "emailAddresses": [{"value": "emmy@example.org"}]}


def crm_ids(hub: GoogleHub, browser: Any, connection_id: uuid.UUID) -> dict[str, str]:
    """External id to CRM id of every stored contact; a contact stored twice fails here."""
    stored = hub.contacts(browser, connection_id)
    assert len(stored) == len({c["external_id"] for c in stored}), "a contact is stored twice"
    return {c["external_id"]: c["id"] for c in stored}


def faulted(hub: GoogleHub, account: str, mark: int) -> int:
    return sum(1 for e in hub.people_calls(account, mark) if e["fault"])


@pytest.mark.parametrize("pass_kind", ["full", "incremental"])
def test_a_page_with_neither_a_next_page_nor_a_sync_token_never_ends_a_pass_or_deletes(
    google_hub: GoogleHub, pass_kind: str
) -> None:
    """Google's last page always carries the sync token the hub asks for: a page with neither token is malformed.
    While Google keeps answering it the run retries and deletes nothing; once Google answers well it succeeds."""
    admin, account = google_hub.admin, new_account(google_hub.admin, contacts=4 * PAGE_SIZE)
    browser = google_hub.browser(user=f"tokenless-{pass_kind}")
    connection_id = google_hub.connect(browser, account)
    assert google_hub.wait_run(browser, connection_id)["status"] == "succeeded"
    before = crm_ids(google_hub, browser, connection_id)
    added = admin.add_contact(account, EMMY)
    if pass_kind == "full":
        admin.expire_sync_tokens(account)
    # full: the expired token's 400 and the pass's first page pass, its second page is malformed;
    # incremental: the one page of changes is.
    skip = 2 if pass_kind == "full" else 0
    tokenless = json.dumps({"connections": [], "totalItems": 4 * PAGE_SIZE, "totalPeople": 4 * PAGE_SIZE})
    mark = google_hub.log_mark()
    admin.set_faults([{"path_prefix": "/v1/people", "rate": 1.0, "skip": skip, "body": tokenless}])
    try:
        run_id = browser.post(f"{google_hub.url}/api/v1/connections/{connection_id}/sync").json()["runs"]["contacts"]

        def met_five_times_or_ended() -> tuple[str, str | None] | None:
            with google_hub.sessions() as session:
                run = session.get_one(SyncRun, uuid.UUID(run_id))
                if faulted(google_hub, account, mark) >= 5 or run.status not in ACTIVE:
                    return run.status, run.error
            return None

        status, error = wait_for(met_five_times_or_ended, timeout=60, what="the run to meet the page 5 times")
        assert status in ACTIVE, f"a malformed page must never end the run ({status}: {error})"
        assert crm_ids(google_hub, browser, connection_id) == before, "nothing deleted, nothing re-created"
    finally:
        admin.clear_faults()

    run = google_hub.wait_run(browser, connection_id, run_id)
    assert run["status"] == "succeeded", run["error"]
    assert run["full_sync"] is (pass_kind == "full")
    after = crm_ids(google_hub, browser, connection_id)
    assert set(after) == set(before) | {added}
    assert {k: after[k] for k in before} == before, "every contact keeps its CRM id"
    quiet = google_hub.sync_now(browser, connection_id)
    assert quiet["status"] == "succeeded" and quiet["full_sync"] is False
    assert quiet["counts"] == {"created": 0, "updated": 0, "deleted": 0}
    assert crm_ids(google_hub, browser, connection_id) == after


CONNECTION_FAULTS = ["reset", "short_body", "bad_status_line"]


@pytest.mark.parametrize("fault", CONNECTION_FAULTS)
def test_a_broken_connection_on_a_people_call_is_retried_and_nothing_is_lost_or_doubled(
    google_hub: GoogleHub, fault: str
) -> None:
    """Twice in a row, on the second page: httplib2 itself silently retries one bad status line on a fresh
    request (it takes it for a stale keep-alive connection), so only a second one reaches the hub."""
    admin, account = google_hub.admin, new_account(google_hub.admin, contacts=3 * PAGE_SIZE)
    browser = google_hub.browser(user=f"broken-{fault}")
    mark = google_hub.log_mark()
    admin.set_faults([{"path_prefix": "/v1/people", "rate": 1.0, "skip": 1, "times": 2, "connection": fault}])
    try:
        connection_id = google_hub.connect(browser, account)
        run = google_hub.wait_run(browser, connection_id)
    finally:
        admin.clear_faults()

    assert run["status"] == "succeeded", run["error"]
    assert run["counts"] == {"created": 3 * PAGE_SIZE, "updated": 0, "deleted": 0}
    assert faulted(google_hub, account, mark) == 2
    stored = google_hub.contacts(browser, connection_id)
    people = truth.people(admin, account, google_hub.client_id)
    assert Counter(c["external_id"] for c in stored) == Counter(people.keys())


@pytest.mark.parametrize(
    "fault", [{"connection": name} for name in CONNECTION_FAULTS] + [{"status": 503}], ids=[*CONNECTION_FAULTS, "503"]
)
def test_a_broken_token_endpoint_during_a_refresh_is_retried_never_read_as_revoked(
    google_hub: GoogleHub, fault: dict[str, Any]
) -> None:
    admin, account = google_hub.admin, new_account(google_hub.admin, contacts=PAGE_SIZE)
    browser = google_hub.browser(user="refresh")
    connection_id = google_hub.connect(browser, account)
    assert google_hub.wait_run(browser, connection_id)["status"] == "succeeded"
    added = admin.add_contact(account, EMMY)
    assert admin.expire_access_tokens(account=account, client_id=google_hub.client_id) == 1
    mark = google_hub.log_mark()
    admin.set_faults([{"path_prefix": "/token", "rate": 1.0, "times": 2, **fault}])
    try:
        run = google_hub.sync_now(browser, connection_id)
    finally:
        admin.clear_faults()

    token_calls = [e for e in admin.request_log(mark) if e["path"] == "/token"]
    assert [e["fault"] for e in token_calls] == [True, True, False], "refreshed after two broken answers"
    assert run["status"] == "succeeded", run["error"]
    assert run["counts"] == {"created": 1, "updated": 0, "deleted": 0}
    assert google_hub.connection(browser, connection_id)["status"] == "active"
    assert added in crm_ids(google_hub, browser, connection_id)


def test_a_sync_token_google_calls_invalid_runs_a_full_pass_without_duplicates(google_hub: GoogleHub) -> None:
    admin, account = google_hub.admin, new_account(google_hub.admin, contacts=3 * PAGE_SIZE)
    browser = google_hub.browser(user="forgotten-token")
    connection_id = google_hub.connect(browser, account)
    assert google_hub.wait_run(browser, connection_id)["status"] == "succeeded"
    before = crm_ids(google_hub, browser, connection_id)
    gone = sorted(before)[0]
    admin.delete_contact(account, gone)
    admin.forget_sync_tokens(account)
    mark = google_hub.log_mark()

    run = google_hub.sync_now(browser, connection_id)

    assert run["status"] == "succeeded", run["error"]
    assert run["full_sync"] is True and (run["counts"]["created"], run["counts"]["deleted"]) == (0, 1)
    first = google_hub.people_calls(account, mark)[0]
    assert (first["status"], "syncToken=REDACTED" in first["query"]) == (400, True), "the forgotten token, once"
    after = crm_ids(google_hub, browser, connection_id)
    assert after == {k: v for k, v in before.items() if k != gone}, "same CRM ids, none doubled, the deleted gone"
    quiet = google_hub.sync_now(browser, connection_id)
    assert quiet["status"] == "succeeded" and quiet["full_sync"] is False
