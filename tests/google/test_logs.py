"""A real worker's log after a sync: one JSON object a line, the run's lines carrying its run and connection ids, and
no token, client secret or synced name, email or phone anywhere in it."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

from core.models import Connection
from sync.checkpoints import load
from sync.dispatch import RUN_TASK
from tests.conftest import Worker, wait_for
from tests.google.conftest import GoogleHub, new_account
from tests.google.test_tokens import expire_stored_access_token
from token_vault.vault import key_ring

NAME, FAMILY = "Philippa", "Quarrendon-Xyst"
EMAIL = "philippa.quarrendon@private-example.org"
PHONE = "+44 20 7946 0817"
PERSON = {
    "names": [{"givenName": NAME, "familyName": FAMILY}],
    "emailAddresses": [{"value": EMAIL}],
    "phoneNumbers": [{"value": PHONE}],
}


def lines_of(worker: Worker) -> list[dict[str, Any]]:
    """Every line of the worker's log as JSON; a line that is not JSON fails the test, naming it."""
    parsed = []
    for line in worker.output().splitlines():
        try:
            parsed.append(json.loads(line))
        except ValueError:
            raise AssertionError(f"not a JSON line in the worker's log: {line!r}") from None
    return parsed


def test_a_workers_log_is_json_with_the_runs_ids_and_no_secret_or_record_contents(
    google_hub_factory: Callable[..., GoogleHub],
) -> None:
    hub = google_hub_factory()
    account = new_account(hub.admin, contacts=3)
    hub.admin.add_contact(account, PERSON)
    worker = Worker(hub.env, queues="sync,maintenance", concurrency=1).start()
    try:
        browser = hub.browser(user="log-reader")
        connection_id = hub.connect(browser, account)
        first = hub.wait_run(browser, connection_id)
        assert first["status"] == "succeeded"
        expire_stored_access_token(hub, connection_id)  # the next run refreshes it, inside the run
        second = hub.sync_now(browser, connection_id)
        assert second["status"] == "succeeded"
        run_ids = {first["id"], second["id"]}

        def both_runs_logged() -> list[dict[str, Any]] | None:
            lines = lines_of(worker)
            ended = {line.get("run_id") for line in lines if line["message"] == "run slice ended"}
            return lines if run_ids <= ended else None

        lines = wait_for(both_runs_logged, timeout=30, what="the worker to log both runs' ends")
    finally:
        worker.stop()

    assert all({"ts", "level", "logger", "message"} <= set(line) for line in lines)
    runs = [line for line in lines if line.get("run_id") in run_ids]
    engine_lines = [line for line in runs if line["logger"] == "sync.engine"]
    assert {line["message"] for line in engine_lines} >= {"run slice started", "run slice ended"}
    for line in engine_lines + [line for line in runs if line["logger"].startswith("token_vault")]:
        assert line["connection_id"] == str(connection_id) and line["capability"] == "contacts", line
    refreshed = [line for line in runs if line["message"] == "token refreshed"]
    assert [line["run_id"] for line in refreshed] == [second["id"]], "the refresh inside the run carries its id"
    succeeded = [line for line in runs if line["logger"] == "celery.app.trace" and "succeeded" in line["message"]]
    assert {line["run_id"] for line in succeeded} == run_ids and {line["task"] for line in succeeded} == {RUN_TASK}

    with hub.sessions() as session:
        connection = session.get_one(Connection, uuid.UUID(str(connection_id)))
        sync_token = load(session, key_ring(hub.settings.vault), connection, "contacts").cursor["sync_token"]
    issued = [token["value"] for token in hub.admin.tokens(client_id=hub.client_id)]
    assert len(issued) >= 3, "access, refresh and refreshed access tokens"
    log = worker.output()
    secrets = {"an issued token": issued, "the client secret": [hub.client_secret], "the sync token": [sync_token]}
    for what, values in secrets.items():
        assert not any(value in log for value in values), f"the worker's log holds {what}"
    contents = [value for value in (NAME, FAMILY, EMAIL, PHONE, PHONE.replace(" ", "")) if value in log]
    assert not contents, f"the worker's log holds {contents}"
