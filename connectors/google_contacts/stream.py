"""The contacts stream: People connections.list, full passes and sync-token increments, one page at a time."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, TypeVar

from connectors import google_api
from connectors.base import Cursor, Page, StreamContext
from connectors.google_contacts.errors import classify
from connectors.google_contacts.wire import PAGE_DECODER, ConnectionsPage, Item, Name, Organization, Person
from core.errors import Retryable
from crm.records import Contact, EmailAddress, PhoneNumber

P = TypeVar("P", Item, Name, Organization)

PERSON_FIELDS = "metadata,names,emailAddresses,phoneNumbers,organizations"
DEFAULT_ENDPOINT = "https://people.googleapis.com/"
MAX_PAGE_SIZE = 1000


def _is_primary(item: Item | Name | Organization) -> bool:
    return item.metadata is not None and bool(item.metadata.primary)


def _primary(items: tuple[P, ...] | None) -> P | None:
    if not items:
        return None
    for item in items:
        if _is_primary(item):
            return item
    return items[0]


def to_contact(person: Person) -> Contact:
    """Map one Person; plain loops, since this runs for every contact of every page."""
    name = _primary(person.names)
    organization = _primary(person.organizations)
    metadata = person.metadata
    return Contact(
        external_id=person.resource_name,
        display_name=name.display_name if name else None,
        given_name=name.given_name if name else None,
        family_name=name.family_name if name else None,
        emails=tuple([EmailAddress(e.value, e.type, _is_primary(e)) for e in person.email_addresses or () if e.value]),
        phones=tuple([PhoneNumber(p.value, p.type, _is_primary(p)) for p in person.phone_numbers or () if p.value]),
        organization=organization.name if organization else None,
        job_title=organization.title if organization else None,
        previous_external_ids=(metadata.previous_resource_names or ()) if metadata else (),
    )


class GoogleContactsStream:
    def __init__(self, context: StreamContext) -> None:
        self.context = context
        endpoint = context.base_url.rstrip("/") + "/" if context.base_url else DEFAULT_ENDPOINT
        self.connections = google_api.service("people", "v1", endpoint).people().connections()
        self.page_size = int(getattr(context.settings, "page_size", MAX_PAGE_SIZE))

    def read(self, cursor: Cursor | None) -> Iterator[Page]:
        sync_token = cursor.get("sync_token") if cursor else None
        page_token = cursor.get("page_token") if cursor else None
        full = sync_token is None
        while True:
            body = self._list(sync_token, page_token)
            page_token = body.next_page_token
            deleted, records = [], []
            for person in body.connections or ():
                if person.metadata is not None and person.metadata.deleted:
                    deleted.append(person.resource_name)
                else:
                    records.append(to_contact(person))
            last = not page_token
            checkpoint: dict[str, str | None]
            if last:
                checkpoint = {"sync_token": body.next_sync_token}
            else:
                checkpoint = {"sync_token": sync_token, "page_token": page_token}
            yield Page(records, deleted, checkpoint, last=last, full=full, total=body.total_items)
            if last:
                return

    def _list(self, sync_token: str | None, page_token: str | None) -> ConnectionsPage:
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
        page: ConnectionsPage = self.context.attempt(
            lambda: well_formed(
                google_api.execute(
                    lambda: self.connections.list(**params),
                    self.context.credentials,
                    classify,
                    PAGE_DECODER,
                    self.context.sent,
                    connector="google_contacts",
                )
            )
        )
        return page


def well_formed(page: ConnectionsPage) -> ConnectionsPage:
    """Every page continues (a page token) or ends with the sync token we always request; one with neither ends
    nothing, and taking it for the last page would delete every contact a full pass had not reached yet."""
    if not page.next_page_token and not page.next_sync_token:
        raise Retryable("Google answered a page with neither a next page token nor a sync token")
    return page
