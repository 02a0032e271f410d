"""The contacts stream: People connections.list, full passes and sync-token increments, one page at a time."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from connectors import google_api
from connectors.base import Cursor, Page, StreamContext
from connectors.google_contacts.errors import classify
from crm.records import Contact, EmailAddress, PhoneNumber

PERSON_FIELDS = "metadata,names,emailAddresses,phoneNumbers,organizations"
DEFAULT_ENDPOINT = "https://people.googleapis.com/"
MAX_PAGE_SIZE = 1000


NOTHING: Mapping[str, Any] = {}


def _is_primary(item: Mapping[str, Any]) -> bool:
    return bool((item.get("metadata") or NOTHING).get("primary"))


def _primary(items: list[dict[str, Any]] | None) -> Mapping[str, Any]:
    if not items:
        return NOTHING
    for item in items:
        if _is_primary(item):
            return item
    return items[0]


def to_contact(person: Mapping[str, Any]) -> Contact:
    """Map one Person; plain loops, since this runs for every contact of every page."""
    name = _primary(person.get("names"))
    organization = _primary(person.get("organizations"))
    emails = person.get("emailAddresses")
    phones = person.get("phoneNumbers")
    metadata = person.get("metadata") or NOTHING
    return Contact(
        external_id=person["resourceName"],
        display_name=name.get("displayName"),
        given_name=name.get("givenName"),
        family_name=name.get("familyName"),
        emails=tuple([EmailAddress(e["value"], e.get("type"), _is_primary(e)) for e in emails if e.get("value")])
        if emails
        else (),
        phones=tuple([PhoneNumber(p["value"], p.get("type"), _is_primary(p)) for p in phones if p.get("value")])
        if phones
        else (),
        organization=organization.get("name"),
        job_title=organization.get("title"),
        previous_external_ids=tuple(metadata.get("previousResourceNames", ())),
    )


class GoogleContactsStream:
    def __init__(self, context: StreamContext) -> None:
        self.context = context
        endpoint = context.base_url.rstrip("/") + "/" if context.base_url else DEFAULT_ENDPOINT
        self.connections = google_api.service("people", "v1", endpoint).people().connections()
        self.page_size = int(context.settings.get("page_size", MAX_PAGE_SIZE))

    def read(self, cursor: Cursor | None) -> Iterator[Page]:
        sync_token = cursor.get("sync_token") if cursor else None
        page_token = cursor.get("page_token") if cursor else None
        full = sync_token is None
        while True:
            body = self._list(sync_token, page_token)
            people = body.get("connections", [])
            page_token = body.get("nextPageToken")
            deleted, records = [], []
            for person in people:
                if (person.get("metadata") or NOTHING).get("deleted"):
                    deleted.append(person["resourceName"])
                else:
                    records.append(to_contact(person))
            last = not page_token
            if last:
                checkpoint = {"sync_token": body["nextSyncToken"]} if body.get("nextSyncToken") else {}
            else:
                checkpoint = {"sync_token": sync_token, "page_token": page_token}
            yield Page(records, deleted, checkpoint, last=last, full=full, total=body.get("totalItems"))
            if last:
                return

    def _list(self, sync_token: str | None, page_token: str | None) -> dict[str, Any]:
        params: dict[str, Any] = {
            "resourceName": "people/me",
            "personFields": PERSON_FIELDS,
            "pageSize": self.page_size,
            "requestSyncToken": True,
        }
        if sync_token:
            params["syncToken"] = sync_token
        if page_token:
            params["pageToken"] = page_token
        body: dict[str, Any] = self.context.attempt(
            lambda: google_api.execute(lambda: self.connections.list(**params), self.context.tokens, classify)
        )
        return body
