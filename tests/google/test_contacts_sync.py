"""From Google consent to contacts in the CRM, through the browser flow, the API and a real worker."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from sqlalchemy import text

from core.holdings import Role
from tests.google import truth
from tests.google.conftest import CONTACTS_SCOPE, PAGE_SIZE, GoogleHub, new_account
from tests.test_holdings import by_role, held_rows


def test_consent_syncs_every_contact_exactly_once_with_its_fields(google_hub: GoogleHub) -> None:
    account = new_account(google_hub.admin, contacts=120)
    browser = google_hub.browser()
    connection_id = google_hub.connect(browser, account)

    run = google_hub.wait_run(browser, connection_id)
    assert run["status"] == "succeeded", run
    assert run["full_sync"] is True and run["counts"]["created"] == 120
    assert run["api_calls"] == -(-120 // PAGE_SIZE)

    stored = google_hub.contacts(browser, connection_id)
    people = truth.people(google_hub.admin, account, google_hub.client_id)
    assert Counter(c["external_id"] for c in stored) == Counter(people.keys())
    assert {c["external_id"]: truth.as_stored(c) for c in stored} == {
        name: truth.expected(person) for name, person in people.items()
    }
    view = google_hub.connection(browser, connection_id)
    assert view["status"] == "active" and view["account_email"] == account
    assert CONTACTS_SCOPE in view["granted_scopes"]
    assert view["capabilities"][0]["state"] == "ok" and view["records"]["contacts"] == 120
    with google_hub.engine.connect() as db:
        assert (
            db.execute(
                text("select count(*) from crm_contacts where connection_id = :c"), {"c": connection_id}
            ).scalar()
            == 120
        )


def crm_snapshot(hub: GoogleHub) -> dict[str, list[tuple[object, ...]]]:
    """Every row of every crm_* table, to prove a sync changed nothing."""
    with hub.engine.connect() as db:
        tables = db.execute(text("select tablename from pg_tables where tablename like 'crm_%' order by 1")).scalars()
        return {t: sorted(map(tuple, db.execute(text(f'select * from "{t}"')).all()), key=repr) for t in tables}  # noqa: S608


def email_index(hub: GoogleHub, connection_id: object) -> set[tuple[str, str]]:
    with hub.engine.connect() as db:
        rows = db.execute(
            text(
                "select e.contact_id, e.email from crm_contact_emails e join crm_contacts c on c.id = e.contact_id "
                "where c.connection_id = :c"
            ),
            {"c": connection_id},
        ).all()
    return {(str(contact_id), email) for contact_id, email in rows}


def test_incremental_sync_applies_exactly_one_change_delete_and_add(google_hub: GoogleHub) -> None:
    admin, account = google_hub.admin, new_account(google_hub.admin, contacts=60)
    browser = google_hub.browser()
    connection_id = google_hub.connect(browser, account)
    assert google_hub.wait_run(browser, connection_id)["status"] == "succeeded"
    before = {c["external_id"]: c for c in google_hub.contacts(browser, connection_id)}
    changed, deleted = sorted(before)[:2]
    admin.update_contact(account, changed, {"names": [{"givenName": "Grete", "familyName": "Hermann"}]})
    admin.delete_contact(account, deleted)
    added = admin.add_contact(
        account,
        {"names": [{"givenName": "Emmy", "familyName": "Noether"}], "emailAddresses": [{"value": "emmy@example.org"}]},
    )

    run = google_hub.sync_now(browser, connection_id)
    assert run["status"] == "succeeded" and run["full_sync"] is False
    assert run["counts"] == {"created": 1, "updated": 1, "deleted": 1}
    after = {c["external_id"]: c for c in google_hub.contacts(browser, connection_id)}
    assert set(after) == (set(before) - {deleted}) | {added}
    assert after[changed]["id"] == before[changed]["id"]
    assert (after[changed]["given_name"], after[changed]["family_name"]) == ("Grete", "Hermann")
    assert after[added]["emails"][0]["value"] == "emmy@example.org"
    assert all(after[k] == before[k] for k in set(before) - {changed, deleted})
    assert email_index(google_hub, connection_id) == {
        (c["id"], e["value"].strip().lower()) for c in after.values() for e in c["emails"]
    }

    quiet_before, mark = crm_snapshot(google_hub), google_hub.log_mark()
    quiet = google_hub.sync_now(browser, connection_id)
    assert quiet["status"] == "succeeded" and quiet["counts"] == {"created": 0, "updated": 0, "deleted": 0}
    assert len(google_hub.people_calls(account, after=mark)) == 1
    assert crm_snapshot(google_hub) == quiet_before


def test_renamed_contact_keeps_its_crm_row(google_hub: GoogleHub) -> None:
    admin, account = google_hub.admin, new_account(google_hub.admin, contacts=10)
    browser = google_hub.browser()
    connection_id = google_hub.connect(browser, account)
    google_hub.wait_run(browser, connection_id)
    before = {c["external_id"]: c for c in google_hub.contacts(browser, connection_id)}
    old = sorted(before)[0]
    new = admin.update_contact(account, old, {"emailAddresses": [{"value": "verified@example.com"}]}, rename=True)
    assert new != old
    run = google_hub.sync_now(browser, connection_id)
    assert run["counts"] == {"created": 0, "updated": 1, "deleted": 0}
    after = {c["external_id"]: c for c in google_hub.contacts(browser, connection_id)}
    assert old not in after and after[new]["id"] == before[old]["id"] and len(after) == 10


def test_expired_sync_token_runs_a_full_pass_that_reconciles_without_duplicates(google_hub: GoogleHub) -> None:
    admin, account = google_hub.admin, new_account(google_hub.admin, contacts=120)
    browser = google_hub.browser()
    connection_id = google_hub.connect(browser, account)
    google_hub.wait_run(browser, connection_id)
    before = {c["external_id"]: c for c in google_hub.contacts(browser, connection_id)}
    gone = sorted(before)[:3]
    for name in gone:
        admin.delete_contact(account, name)
    admin.expire_sync_tokens(account)

    run = google_hub.sync_now(browser, connection_id)
    assert run["status"] == "succeeded" and run["full_sync"] is True
    assert run["counts"]["created"] == 0 and run["counts"]["deleted"] == 3
    after = google_hub.contacts(browser, connection_id)
    assert Counter(c["external_id"] for c in after) == Counter(set(before) - set(gone))
    assert all(c["id"] == before[c["external_id"]]["id"] for c in after)


def test_full_pass_failing_halfway_deletes_nothing(google_hub: GoogleHub) -> None:
    admin, account = google_hub.admin, new_account(google_hub.admin, contacts=200)
    browser = google_hub.browser()
    connection_id = google_hub.connect(browser, account)
    google_hub.wait_run(browser, connection_id)
    before = {c["external_id"]: c["id"] for c in google_hub.contacts(browser, connection_id)}
    admin.delete_contact(account, sorted(before)[0])
    admin.expire_sync_tokens(account)
    mark = google_hub.log_mark()
    admin.set_faults([{"path_prefix": "/v1/people", "status": 500, "rate": 1.0, "skip": 3}], seed=3)
    try:
        response = browser.post(f"{google_hub.url}/api/v1/connections/{connection_id}/sync").json()
        run_id = response["runs"]["contacts"]

        def failed_third_page() -> bool:
            faulted = [e for e in admin.request_log(mark) if e["fault"] and e["path"].startswith("/v1/people")]
            return len(faulted) >= 3

        from tests.conftest import wait_for

        wait_for(failed_third_page, timeout=60, what="the third page to fail")
        stored = {c["external_id"]: c["id"] for c in google_hub.contacts(browser, connection_id)}
        assert stored == before, "a failed full pass must delete nothing"
    finally:
        admin.clear_faults()
    run = google_hub.wait_run(browser, connection_id, run_id)
    assert run["status"] == "succeeded"
    assert len(google_hub.contacts(browser, connection_id)) == 199


def test_contacts_not_granted_shows_grant_access_and_makes_no_call_until_granted(google_hub: GoogleHub) -> None:
    admin, account = google_hub.admin, new_account(google_hub.admin, contacts=30)
    browser = google_hub.browser()
    mark = google_hub.log_mark()
    admin.google_settings(force_scope_checkboxes=True)
    try:
        connection_id = google_hub.connect(browser, account, tick=[])
    finally:
        admin.google_settings(force_scope_checkboxes=False)
    view = google_hub.connection(browser, connection_id)
    assert CONTACTS_SCOPE not in view["granted_scopes"]
    assert view["capabilities"][0]["state"] == "grant_access" and view["capabilities"][0]["last_run"] is None
    refused = browser.post(f"{google_hub.url}/api/v1/connections/{connection_id}/sync").json()
    assert refused["runs"] == {"contacts": None}
    assert google_hub.people_calls(account, after=mark) == []
    assert "Grant access" in browser.get(f"{google_hub.url}/").text

    again = google_hub.connect(browser, account)
    assert again == connection_id
    run = google_hub.wait_run(browser, connection_id)
    assert run["status"] == "succeeded" and run["counts"]["created"] == 30
    view = google_hub.connection(browser, connection_id)
    assert CONTACTS_SCOPE in view["granted_scopes"] and view["capabilities"][0]["state"] == "ok"


def connection_count(hub: GoogleHub) -> int:
    with hub.engine.connect() as db:
        return int(db.execute(text("select count(*) from connections")).scalar_one())


def test_forged_reused_or_foreign_state_is_refused_and_stores_nothing(google_hub: GoogleHub) -> None:
    account = new_account(google_hub.admin, contacts=1)
    browser, stranger = google_hub.browser(), google_hub.browser(user="someone-else")
    count = connection_count(google_hub)

    forged = browser.get(f"{google_hub.url}/oauth/google/callback", params={"state": "forged", "code": "4/forged"})
    assert forged.status_code == 400 and "expired or was already used" in forged.text

    back = google_hub.consent(browser, account)
    hijacked = stranger.get(back.headers["location"])
    assert hijacked.status_code == 403 and "another user" in hijacked.text
    replayed = browser.get(back.headers["location"])
    assert replayed.status_code == 400

    denied = google_hub.consent(browser, account, action="deny")
    refused = browser.get(denied.headers["location"])
    assert refused.status_code == 400 and "access_denied" in refused.text
    assert connection_count(google_hub) == count


def test_two_accounts_two_connections_reconnect_reuses_and_workspaces_never_mix(google_hub: GoogleHub) -> None:
    first, second = new_account(google_hub.admin, contacts=5), new_account(google_hub.admin, contacts=7)
    browser = google_hub.browser(user="multi", workspace="ws-multi")
    one = google_hub.connect(browser, first)
    two = google_hub.connect(browser, second)
    assert one != two
    google_hub.wait_run(browser, one)
    google_hub.wait_run(browser, two)
    assert len(google_hub.contacts(browser, one)) == 5 and len(google_hub.contacts(browser, two)) == 7
    assert google_hub.connect(browser, first) == one
    listed = browser.get(f"{google_hub.url}/api/v1/connections").json()["connections"]
    assert sorted(c["id"] for c in listed) == sorted([str(one), str(two)])

    outsider = google_hub.browser(user="multi", workspace="ws-other")
    assert outsider.get(f"{google_hub.url}/api/v1/connections/{one}").status_code == 404
    assert outsider.delete(f"{google_hub.url}/api/v1/connections/{one}").status_code == 404
    assert outsider.get(f"{google_hub.url}/api/v1/connections").json()["connections"] == []
    assert outsider.get(f"{google_hub.url}/api/v1/contacts").json()["contacts"] == []


def test_disconnect_revokes_erases_credentials_and_keeps_or_deletes_contacts(google_hub: GoogleHub) -> None:
    admin = google_hub.admin
    kept_account, dropped_account = new_account(admin, contacts=8), new_account(admin, contacts=9)
    browser = google_hub.browser(user="leaver")
    kept, dropped = google_hub.connect(browser, kept_account), google_hub.connect(browser, dropped_account)
    google_hub.wait_run(browser, kept)
    google_hub.wait_run(browser, dropped)

    answer = browser.delete(f"{google_hub.url}/api/v1/connections/{kept}").json()
    assert answer["revoked_at_provider"] is True and answer["records_deleted"] == 0
    assert not [t for t in admin.tokens(account=kept_account, client_id=google_hub.client_id) if t["live"]]
    assert len(google_hub.contacts(browser, kept)) == 8
    assert google_hub.connection(browser, kept)["status"] == "disconnected"

    answer = browser.delete(f"{google_hub.url}/api/v1/connections/{dropped}", params={"delete_data": "true"}).json()
    assert answer["records_deleted"] == 9 and google_hub.contacts(browser, dropped) == []
    with google_hub.engine.connect() as db:
        left = db.execute(
            text("select count(*) from credentials where connection_id in (:a, :b)"), {"a": kept, "b": dropped}
        )
        assert left.scalar() == 0
        audit = db.execute(text("select action from audit_log where connection_id = :a order by at"), {"a": kept})
        assert list(audit.scalars()) == ["connection.created", "connection.disconnected"]
    with google_hub.sessions() as session:  # every table the holdings registry lists, not only those named here
        for connection, keeps_records in ((kept, True), (dropped, False)):
            held = held_rows(session, connection)
            assert not any(by_role(held, Role.SECRET).values()) and not any(by_role(held, Role.SCRATCH).values())
            records = by_role(held, Role.RECORDS)
            # The contact tables hold this connection's records; other kinds' tables (events) hold none of it.
            kept_tables = (records["crm_contacts"], records["crm_contact_emails"])
            assert all(kept_tables) if keeps_records else not any(records.values()), held
            assert by_role(held, Role.HISTORY)["sync_runs"] >= 1


def test_cli_sync_runs_in_the_foreground_through_the_same_run_record(google_hub: GoogleHub) -> None:
    import subprocess
    import sys

    from tests.conftest import ROOT, clean_environ

    admin, account = google_hub.admin, new_account(google_hub.admin, contacts=70)
    browser = google_hub.browser(user="cli")
    connection_id = google_hub.connect(browser, account)
    google_hub.wait_run(browser, connection_id)
    admin.add_contact(account, {"names": [{"givenName": "Ada", "familyName": "Byron"}]})
    result = subprocess.run(
        [sys.executable, "-m", "hub", "sync", str(connection_id)],
        env=clean_environ(google_hub.env),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    assert "contacts: succeeded · 1 new, 0 changed, 0 deleted · 1 API calls" in result.stderr
    run = google_hub.capability(browser, connection_id)["last_run"]
    assert run["trigger"] == "cli" and run["counts"]["created"] == 1
    assert len(google_hub.contacts(browser, connection_id)) == 71

    missing = subprocess.run(
        [sys.executable, "-m", "hub", "sync", "not-a-uuid"],
        env=clean_environ(google_hub.env),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert missing.returncode == 2 and "is not a connection id" in missing.stderr


def test_a_run_split_by_its_time_budget_fetches_each_page_once(google_hub: GoogleHub) -> None:
    admin, account = google_hub.admin, new_account(google_hub.admin, contacts=40 * PAGE_SIZE)
    admin.set_faults([{"path_prefix": "/v1/people", "status": None, "rate": 1.0, "latency_ms": 200}])
    try:
        browser = google_hub.browser(user="budget")
        mark = google_hub.log_mark()
        connection_id = google_hub.connect(browser, account)
        run = google_hub.wait_run(browser, connection_id)
    finally:
        admin.clear_faults()
    assert run["status"] == "succeeded" and run["counts"]["created"] == 40 * PAGE_SIZE
    assert run["full_sync"] is True and run["progress"] == {"done": 40 * PAGE_SIZE, "total": 40 * PAGE_SIZE}
    budget = float(google_hub.env["SYNCHUB_CELERY__SYNC_TIME_BUDGET"])
    assert budget < 40 * 0.2, "the run must outlast one task's budget"
    assert len(google_hub.people_calls(account, after=mark)) == 40 == run["api_calls"]
    with google_hub.engine.connect() as db:
        tasks = db.execute(text("select attempts from sync_runs where id = :r"), {"r": run["id"]}).scalar_one()
    assert tasks >= 2, "the run was meant to continue in a second task"


def sync_with_second_page_answered(
    hub: GoogleHub, user: str, body: str
) -> tuple[dict[str, Any], list[dict[str, object]], list[dict[str, Any]], str]:
    """A first sync of three pages whose second page is answered once with `body` instead of the People API's:
    the run, the People requests it made, the contacts stored, and the account."""
    admin, account = hub.admin, new_account(hub.admin, contacts=3 * PAGE_SIZE)
    browser = hub.browser(user=user)
    admin.set_faults([{"path_prefix": "/v1/people", "rate": 1.0, "skip": 1, "times": 1, "body": body}])
    try:
        mark = hub.log_mark()
        connection_id = hub.connect(browser, account)
        run = hub.wait_run(browser, connection_id)
    finally:
        admin.clear_faults()
    return run, hub.people_calls(account, mark), hub.contacts(browser, connection_id), account


def test_a_page_in_a_shape_the_hub_cannot_read_fails_plainly_without_retry_or_writes(google_hub: GoogleHub) -> None:
    wrong = '{"connections": [{"resourceName": 7}], "nextPageToken": "x"}'
    run, requests, stored, _ = sync_with_second_page_answered(google_hub, "shapes", wrong)
    assert run["status"] == "failed"
    assert "shape this hub cannot read" in run["error"] and "$.connections[0].resourceName" in run["error"]
    assert [e["fault"] for e in requests] == [False, True], "page 1, then the unreadable page once: never retried"
    assert len(stored) == PAGE_SIZE, "only the page before it was written"


def test_a_page_that_is_not_json_is_fetched_again_and_nothing_is_lost_or_doubled(google_hub: GoogleHub) -> None:
    run, requests, stored, account = sync_with_second_page_answered(google_hub, "cut-short", '{"connections": [{')
    assert run["status"] == "succeeded", run
    assert run["counts"]["created"] == 3 * PAGE_SIZE
    assert [e["fault"] for e in requests] == [False, True, False, False], "the broken page once more, then on"
    truth_ids = truth.people(google_hub.admin, account, google_hub.client_id).keys()
    assert Counter(c["external_id"] for c in stored) == Counter(truth_ids)


def test_null_fields_and_a_contact_listed_twice_in_a_page_are_read_as_google_means_them(google_hub: GoogleHub) -> None:
    account = new_account(google_hub.admin, contacts=1)
    browser = google_hub.browser(user="nulls")
    empty = {"names": None, "emailAddresses": None, "phoneNumbers": None, "organizations": None}
    page = {
        "connections": [
            {"resourceName": "people/c900", **empty, "metadata": {"deleted": None, "previousResourceNames": None}},
            {"resourceName": "people/c901", "names": [{"displayName": "Earlier", "metadata": {"primary": None}}]},
            {
                "resourceName": "people/c901",
                "names": [{"displayName": "Later", "givenName": "Lea"}],
                "emailAddresses": [{"value": "Lea@Example.com", "metadata": {"primary": True}}],
            },
        ],
        "totalItems": 3,
        "nextSyncToken": "a-sync-token-only-this-page-knows",
    }
    fault = {"path_prefix": "/v1/people", "rate": 1.0, "times": 1, "body": json.dumps(page)}
    connection_id, run = google_hub.connect_under(browser, account, [fault])
    assert run["status"] == "succeeded", run
    assert run["counts"]["created"] == 2
    stored = {c["external_id"]: truth.as_stored(c) for c in google_hub.contacts(browser, connection_id)}
    nothing = dict.fromkeys(("display_name", "given_name", "family_name", "organization", "job_title"))
    assert stored == {
        "people/c900": {"external_id": "people/c900", **nothing, "emails": [], "phones": []},
        "people/c901": {
            "external_id": "people/c901",
            **nothing,
            "display_name": "Later",
            "given_name": "Lea",
            "emails": [{"value": "Lea@Example.com", "type": None, "primary": True}],
            "phones": [],
        },
    }
    assert {email for _, email in email_index(google_hub, connection_id)} == {"lea@example.com"}


def test_contacts_are_found_by_any_of_their_addresses_through_the_email_index(google_hub: GoogleHub) -> None:
    account = new_account(google_hub.admin, contacts=30)
    browser = google_hub.browser(user="finder", workspace="ws-finder")
    connection_id = google_hub.connect(browser, account)
    assert google_hub.wait_run(browser, connection_id)["status"] == "succeeded"
    stored = google_hub.contacts(browser, connection_id)
    wanted = next(c for c in stored if len(c["emails"]) >= 1)
    address = wanted["emails"][-1]["value"]
    found = browser.get(f"{google_hub.url}/api/v1/contacts", params={"email": f"  {address.upper()} "}).json()
    assert [c["id"] for c in found["contacts"]] == [
        c["id"] for c in stored if address.lower() in {e["value"].lower() for e in c["emails"]}
    ]
    nobody = browser.get(f"{google_hub.url}/api/v1/contacts", params={"email": "nobody@nowhere.test"}).json()
    assert nobody == {"contacts": [], "next_cursor": None}
    stranger = google_hub.browser(user="finder", workspace="ws-other")
    assert stranger.get(f"{google_hub.url}/api/v1/contacts", params={"email": address}).json()["contacts"] == []


def test_a_first_pass_that_lists_a_contact_on_two_pages_stores_it_once_as_last_listed(google_hub: GoogleHub) -> None:
    """The first pass into an empty connection writes pages without looking rows up; a contact a later page lists
    again is then written the usual way, not twice and not refused."""
    account = new_account(google_hub.admin, contacts=1)
    browser = google_hub.browser(user="twice")

    def person(number: int, name: str, email: str) -> dict[str, Any]:
        return {
            "resourceName": f"people/c{number}",
            "names": [{"displayName": name}],
            "emailAddresses": [{"value": email}],
        }

    first = {
        "connections": [person(910, "Ann", "ann@example.com"), person(911, "Bo", "bo@example.com")],
        "nextPageToken": "page-two",
        "totalItems": 4,
    }
    second = {
        "connections": [person(911, "Bo Again", "bo@again.example"), person(912, "Cy", "cy@example.com")],
        "nextSyncToken": "synced",
        "totalItems": 4,
    }
    faults = [
        {"path_prefix": "/v1/people", "rate": 1.0, "times": 1, "body": json.dumps(first)},
        {"path_prefix": "/v1/people", "rate": 1.0, "times": 1, "skip": 1, "body": json.dumps(second)},
    ]
    connection_id, run = google_hub.connect_under(browser, account, faults)
    assert run["status"] == "succeeded", run
    assert (run["counts"]["created"], run["counts"]["updated"]) == (3, 1)
    stored = {c["external_id"]: c["display_name"] for c in google_hub.contacts(browser, connection_id)}
    assert stored == {"people/c910": "Ann", "people/c911": "Bo Again", "people/c912": "Cy"}
    assert sorted(email for _, email in email_index(google_hub, connection_id)) == [
        "ann@example.com",
        "bo@again.example",
        "cy@example.com",
    ]
