"""Pages Google should never send, broken connections and forgotten sync tokens, met for real in a sync."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from sync.models import SyncRun
from tests.conftest import wait_for
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
