"""A database error while a page is written logs no record contents, in the worker's log or the API's; the worker's
line for it is JSON naming the run and connection, and the error by its class and constraint."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import text

from core.logs import JsonFormatter
from sync.models import SyncRun
from tests.conftest import Worker, wait_for
from tests.google.conftest import GoogleHub, new_account

NAME, FAMILY = "Philippa", "Quarrendon-Xyst"
EMAIL = "philippa.quarrendon@private-example.org"
PHONE = "+44 20 7946 0817"
PERSON = {
    "names": [{"givenName": NAME, "familyName": FAMILY}],
    "emailAddresses": [{"value": EMAIL}],
    "phoneNumbers": [{"value": PHONE}],
}
REFUSAL = "refused by the log privacy test"


@pytest.fixture(scope="module")
def hub(google_hub_factory: Callable[..., GoogleHub]) -> GoogleHub:
    """A hub with no worker of its own: each test starts the one whose log it reads."""
    return google_hub_factory()


@pytest.fixture(params=["trigger", "check"])
def refusing_writes(hub: GoogleHub, request: pytest.FixtureRequest) -> Iterator[str]:
    """PostgreSQL refuses a contact row: a trigger refuses every write, or a CHECK constraint refuses the private
    person's row (and quotes it whole in its DETAIL). Yields the text the refusal shows in a log."""
    if request.param == "check":
        with hub.engine.begin() as db:
            db.execute(
                text(
                    "ALTER TABLE crm_contacts ADD CONSTRAINT refuse_contact_write "
                    f"CHECK (given_name IS DISTINCT FROM '{NAME}') NOT VALID"
                )
            )
        yield "refuse_contact_write"
        with hub.engine.begin() as db:
            db.execute(text("ALTER TABLE crm_contacts DROP CONSTRAINT refuse_contact_write"))
        return
    with hub.engine.begin() as db:
        db.execute(
            text(
                "CREATE OR REPLACE FUNCTION refuse_contact_write() RETURNS trigger LANGUAGE plpgsql AS "
                f"$$ BEGIN RAISE EXCEPTION '{REFUSAL}'; END $$"
            )
        )
        db.execute(
            text(
                "CREATE TRIGGER refuse_contact_write BEFORE INSERT OR UPDATE ON crm_contacts "
                "FOR EACH ROW EXECUTE FUNCTION refuse_contact_write()"
            )
        )
    yield REFUSAL
    with hub.engine.begin() as db:
        db.execute(text("DROP TRIGGER refuse_contact_write ON crm_contacts"))
        db.execute(text("DROP FUNCTION refuse_contact_write()"))


def leaked(log: str) -> list[str]:
    return [value for value in (NAME, FAMILY, EMAIL, PHONE, PHONE.replace(" ", "")) if value in log]


@pytest.mark.parametrize("write", ["insert", "update"])
def test_a_database_error_during_a_page_write_logs_no_names_emails_or_phones(
    hub: GoogleHub, refusing_writes: str, caplog: pytest.LogCaptureFixture, write: str
) -> None:
    trigger = refusing_writes == REFUSAL
    admin = hub.admin
    account = new_account(admin, contacts=3)
    browser = hub.browser(user=f"privacy-{write}")
    worker = Worker(hub.env, queues="sync,maintenance", concurrency=1).start()
    try:
        caplog.set_level(logging.DEBUG)
        if write == "update":
            if trigger:
                with hub.engine.begin() as db:
                    db.execute(text("ALTER TABLE crm_contacts DISABLE TRIGGER refuse_contact_write"))
            connection_id = hub.connect(browser, account)
            assert hub.wait_run(browser, connection_id)["status"] == "succeeded"
            first = hub.contacts(browser, connection_id)[0]["external_id"]
            admin.update_contact(account, first, PERSON)
            if trigger:
                with hub.engine.begin() as db:
                    db.execute(text("ALTER TABLE crm_contacts ENABLE TRIGGER refuse_contact_write"))
            run_id = browser.post(f"{hub.url}/api/v1/connections/{connection_id}/sync").json()["runs"]["contacts"]
        else:
            admin.add_contact(account, PERSON)
            connection_id = hub.connect(browser, account)
            run_id = hub.capability(browser, connection_id)["last_run"]["id"]

        def refused_in_the_worker() -> list[dict[str, Any]] | None:
            lines = [json.loads(line) for line in worker.output().splitlines()]  # read before its shutdown note
            refused = (line for line in lines if refusing_writes in line.get("exception", line["message"]))
            return lines if any(line["run_id"] == run_id for line in refused) else None

        lines = wait_for(refused_in_the_worker, timeout=60, what="the worker to meet the database's refusal")
        with hub.sessions() as session:
            error = session.get_one(SyncRun, uuid.UUID(run_id)).error or ""
        shown = browser.get(f"{hub.url}/api/v1/connections/{connection_id}").text
    finally:
        worker.stop()
    assert not leaked(worker.output()), f"the worker's log holds {leaked(worker.output())}"
    refused = [line for line in lines if refusing_writes in line.get("exception", line["message"])]
    # An earlier test's run, retried meanwhile, may meet the same refusal: each line names its own run.
    assert all(line["run_id"] and line["connection_id"] and line["capability"] == "contacts" for line in refused)
    assert any(line["run_id"] == run_id and line["connection_id"] == str(connection_id) for line in refused), refused
    api_lines = "\n".join(JsonFormatter().format(record) for record in caplog.records)
    assert not leaked(caplog.text), f"the API's records hold {leaked(caplog.text)}"
    assert not leaked(api_lines), f"the API's log holds {leaked(api_lines)}"
    assert not leaked(error) and not leaked(shown), "the run's error holds a record's contents"
