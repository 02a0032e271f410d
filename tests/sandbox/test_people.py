"""People API `connections.list` through the real google-api-python-client: paging, masks, sync, errors."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from googleapiclient.discovery import Resource
from googleapiclient.errors import HttpError

from sandbox.admin_client import SandboxAdmin
from tests.sandbox.conftest import ADA, ALL_FIELDS, CLIENT_ID, CONTACTS, GRACE, Sandbox, list_all

People = Callable[[str], Resource]


def error_of(call: Any) -> tuple[int, dict[str, Any]]:
    with pytest.raises(HttpError) as refused:
        call.execute(num_retries=0)
    return refused.value.resp.status, json.loads(refused.value.content)["error"]


def reasons(error: dict[str, Any]) -> list[str]:
    return [detail["reason"] for detail in error.get("details", [])]


def token_for(admin: SandboxAdmin, account: str) -> str:
    token: str = admin.mint_tokens(account, CLIENT_ID, [CONTACTS])["access_token"]
    return token


def test_pages_through_every_contact_with_a_sync_token_on_the_last_page(people: People, ada_token: str) -> None:
    persons, pages = list_all(people(ada_token), page_size=100, requestSyncToken=True)

    assert [len(p["connections"]) for p in pages] == [100, 100, 50]
    assert len({p["resourceName"] for p in persons}) == 250
    assert ["nextPageToken" in p for p in pages] == [True, True, False]
    assert ["nextSyncToken" in p for p in pages] == [False, False, True]
    assert {p["totalItems"] for p in pages} == {250}


def test_no_sync_token_unless_requested(people: People, ada_token: str) -> None:
    _, pages = list_all(people(ada_token), page_size=1000)

    assert len(pages) == 1 and "nextSyncToken" not in pages[0] and "nextPageToken" not in pages[0]


def test_person_fields_is_required_and_checked(people: People, ada_token: str) -> None:
    connections = people(ada_token)

    missing_status, missing = error_of(connections.list(resourceName="people/me"))
    invalid_status, invalid = error_of(connections.list(resourceName="people/me", personFields="names,nope"))

    assert (missing_status, missing["status"]) == (400, "INVALID_ARGUMENT")
    assert missing["message"].startswith("personFields mask is required.")
    assert (invalid_status, invalid["status"]) == (400, "INVALID_ARGUMENT")
    assert invalid["message"].startswith('Invalid personFields mask path: "nope".')


@pytest.mark.parametrize(("size", "served"), [(0, 100), (1, 1), (1000, 250)])
def test_page_size_default_and_bounds(people: People, ada_token: str, size: int, served: int) -> None:
    page = people(ada_token).list(resourceName="people/me", personFields="names", pageSize=size).execute(num_retries=0)

    assert len(page["connections"]) == served


@pytest.mark.parametrize("size", [1001, -1])
def test_page_size_out_of_range_is_refused(people: People, ada_token: str, size: int) -> None:
    status, error = error_of(people(ada_token).list(resourceName="people/me", personFields="names", pageSize=size))

    assert (status, error["status"]) == (400, "INVALID_ARGUMENT")


def test_field_mask_limits_what_comes_back(people: People, ada_token: str) -> None:
    page = people(ada_token).list(resourceName="people/me", personFields="emailAddresses", pageSize=1000).execute()

    keys = {key for person in page["connections"] for key in person}
    assert keys == {"resourceName", "etag", "emailAddresses"}


def test_an_empty_account_has_no_connections_key(admin: SandboxAdmin, people: People) -> None:
    admin.seed_account("empty@sandbox.test", contacts=0)

    page = (
        people(token_for(admin, "empty@sandbox.test"))
        .list(resourceName="people/me", personFields="names", requestSyncToken=True)
        .execute(num_retries=0)
    )

    assert "connections" not in page and "nextPageToken" not in page and "nextSyncToken" in page


def test_sync_token_returns_exactly_what_changed(admin: SandboxAdmin, people: People) -> None:
    connections = people(token_for(admin, GRACE))
    persons, pages = list_all(connections, page_size=30, requestSyncToken=True)
    changed, removed, renamed = persons[3]["resourceName"], persons[5]["resourceName"], persons[7]["resourceName"]

    added = admin.add_contact(GRACE, {"names": [{"givenName": "Linus", "familyName": "Torvalds"}]})
    admin.update_contact(GRACE, changed, {"organizations": [{"name": "Harvard Mark I", "type": "work"}]})
    admin.delete_contact(GRACE, removed)
    new_name = admin.update_contact(GRACE, renamed, {"urls": [{"value": "https://example.org/u/7"}]}, rename=True)
    delta = connections.list(
        resourceName="people/me", personFields=ALL_FIELDS, syncToken=pages[-1]["nextSyncToken"], requestSyncToken=True
    ).execute(num_retries=0)
    quiet = connections.list(
        resourceName="people/me", personFields=ALL_FIELDS, syncToken=delta["nextSyncToken"], requestSyncToken=True
    ).execute(num_retries=0)

    by_name = {p["resourceName"]: p for p in delta["connections"]}
    assert set(by_name) == {added, changed, removed, new_name}
    assert by_name[removed]["metadata"]["deleted"] is True and set(by_name[removed]) == {
        "resourceName",
        "etag",
        "metadata",
    }
    assert by_name[changed]["organizations"][0]["name"] == "Harvard Mark I"
    assert by_name[new_name]["metadata"]["previousResourceNames"] == [renamed]
    assert by_name[added]["names"][0]["displayName"] == "Linus Torvalds"
    assert "deleted" not in by_name[added]["metadata"]
    assert "connections" not in quiet and "nextSyncToken" in quiet


def test_previous_resource_names_only_in_sync_requests(admin: SandboxAdmin, people: People) -> None:
    token = token_for(admin, GRACE)
    first = people(token).list(resourceName="people/me", personFields="metadata", pageSize=1).execute()
    renamed = admin.update_contact(GRACE, first["connections"][0]["resourceName"], {}, rename=True)

    persons, _ = list_all(people(token), page_size=1000)

    listed = next(p for p in persons if p["resourceName"] == renamed)
    assert "previousResourceNames" not in listed["metadata"]


def sync_token(connections: Resource) -> str:
    _, pages = list_all(connections, page_size=1000, requestSyncToken=True)
    token: str = pages[-1]["nextSyncToken"]
    return token


def test_expired_sync_token_is_400_with_google_error_info(admin: SandboxAdmin, people: People) -> None:
    connections = people(token_for(admin, GRACE))
    token = sync_token(connections)

    admin.expire_sync_tokens(GRACE)
    status, error = error_of(connections.list(resourceName="people/me", personFields=ALL_FIELDS, syncToken=token))

    assert status == 400 and reasons(error) == ["EXPIRED_SYNC_TOKEN"]
    assert error["status"] == "FAILED_PRECONDITION" and error["message"].startswith("Sync token is expired.")
    assert error["details"][0]["@type"] == "type.googleapis.com/google.rpc.ErrorInfo"


def test_a_forgotten_sync_token_is_invalid_not_expired(admin: SandboxAdmin, people: People) -> None:
    connections = people(token_for(admin, GRACE))
    token = sync_token(connections)

    admin.forget_sync_tokens(GRACE)
    status, error = error_of(connections.list(resourceName="people/me", personFields=ALL_FIELDS, syncToken=token))
    fresh = sync_token(connections)

    assert (status, error) == (400, {"code": 400, "message": "Sync token is invalid.", "status": "INVALID_ARGUMENT"})
    assert connections.list(resourceName="people/me", personFields=ALL_FIELDS, syncToken=fresh).execute() == {}


def test_sync_token_age_and_error_status_are_configurable(admin: SandboxAdmin, people: People) -> None:
    connections = people(token_for(admin, GRACE))
    token = sync_token(connections)

    admin.google_settings(sync_token_max_age=0, expired_sync_token_status="INVALID_ARGUMENT")
    status, error = error_of(connections.list(resourceName="people/me", personFields=ALL_FIELDS, syncToken=token))

    assert (status, error["status"], reasons(error)) == (400, "INVALID_ARGUMENT", ["EXPIRED_SYNC_TOKEN"])


def test_tokens_are_validated(admin: SandboxAdmin, people: People) -> None:
    connections = people(token_for(admin, GRACE))
    first = connections.list(resourceName="people/me", personFields="names", pageSize=10).execute()
    page_token = first["nextPageToken"]
    other_account = people(token_for(admin, ADA))

    tampered = error_of(
        connections.list(resourceName="people/me", personFields="names", pageSize=10, pageToken=page_token[:-2] + "AA")
    )
    changed_params = error_of(
        connections.list(resourceName="people/me", personFields="phoneNumbers", pageSize=10, pageToken=page_token)
    )
    foreign = error_of(
        other_account.list(resourceName="people/me", personFields="names", pageSize=10, pageToken=page_token)
    )

    assert [t[0] for t in (tampered, changed_params, foreign)] == [400, 400, 400]
    assert changed_params[1]["message"].startswith("Parameters provided to `people.connections.list` must match")
    assert foreign[1]["message"] == "Page token is invalid."


def test_sort_orders(people: People, ada_token: str) -> None:
    names = [
        p.get("names", [{}])[0].get("givenName")
        for p in list_all(people(ada_token), page_size=1000, fields="names", sortOrder="FIRST_NAME_ASCENDING")[0]
    ]
    newest_first = list_all(people(ada_token), page_size=1000, fields="names", sortOrder="LAST_MODIFIED_DESCENDING")[0]
    oldest_first = list_all(people(ada_token), page_size=1000, fields="names")[0]

    present = [n for n in names if n]
    assert present == sorted(present, key=str.casefold) and names[-1] is None
    assert newest_first == oldest_first[::-1]


def test_bad_and_missing_tokens_get_google_401(sandbox: Sandbox, people: People, ada_token: str) -> None:
    sandbox.admin.expire_access_tokens(account=ADA)

    expired_status, expired = error_of(people(ada_token).list(resourceName="people/me", personFields="names"))
    bare = httpx.get(sandbox.url + "/v1/people/me/connections", params={"personFields": "names"})

    assert (expired_status, expired["status"]) == (401, "UNAUTHENTICATED")
    assert expired["message"].startswith("Request had invalid authentication credentials.")
    sandbox.validator.check(bare.url.path, bare.status_code, bare.headers["content-type"], bare.content)
    assert bare.status_code == 401 and bare.headers["www-authenticate"] == 'Bearer realm="https://accounts.google.com/"'


def test_access_token_query_parameter_is_accepted(sandbox: Sandbox, ada_token: str) -> None:
    answer = httpx.get(
        sandbox.url + "/v1/people/me/connections",
        params={"personFields": "names", "pageSize": 5, "access_token": ada_token},
    )

    sandbox.validator.check(answer.url.path, answer.status_code, answer.headers["content-type"], answer.content)
    assert answer.status_code == 200 and len(answer.json()["connections"]) == 5


def test_a_large_account_pages_at_a_thousand(admin: SandboxAdmin, people: People) -> None:
    admin.seed_account("big@sandbox.test", contacts=2500)
    connections = people(token_for(admin, "big@sandbox.test"))

    persons, pages = list_all(connections, page_size=1000, fields="names", requestSyncToken=True)

    assert [len(p["connections"]) for p in pages] == [1000, 1000, 500]
    assert len({p["resourceName"] for p in persons}) == 2500
    assert "nextSyncToken" in pages[-1]
