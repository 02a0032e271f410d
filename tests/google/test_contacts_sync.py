"""From Google consent to contacts in the CRM, through the browser flow, the API and a real worker."""

from __future__ import annotations

from collections import Counter

from sqlalchemy import text

from tests.google import truth
from tests.google.conftest import CONTACTS_SCOPE, PAGE_SIZE, GoogleHub, new_account


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
