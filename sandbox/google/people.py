"""People API `GET /v1/people/me/connections`: field masks, paging, sync tokens, scopes and quotas as Google does."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from sandbox.cursors import CursorError
from sandbox.google import errors
from sandbox.google.contacts import SORT_ORDERS, ContactBook, Listing
from sandbox.google.data import PERSON_FIELDS
from sandbox.google.deps import GoogleDep
from sandbox.google.scopes import CONTACTS_READ
from sandbox.google.state import Account, GoogleState
from sandbox.google.token import access_token

DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE = 100, 1000
READ_SOURCES = frozenset(
    {
        "READ_SOURCE_TYPE_CONTACT",
        "READ_SOURCE_TYPE_PROFILE",
        "READ_SOURCE_TYPE_DOMAIN_CONTACT",
        "READ_SOURCE_TYPE_OTHER_CONTACT",
    }
)
MASK_REQUIRED = (
    "personFields mask is required. Please specify one or more valid paths. Valid paths are documented at "
    "https://developers.google.com/people/api/rest/v1/people.connections/list."
)
PARAMS_MUST_MATCH = "Parameters provided to `people.connections.list` must match the first call that provided the {0}."
QUOTA_LIMITS = {
    "app": ("Read requests per minute", "ReadRequestsPerMinutePerProject"),
    "user": ("Read requests per minute per user", "ReadRequestsPerMinutePerUser"),
}

router = APIRouter()


@dataclass(frozen=True)
class ListParams:
    mask: frozenset[str]
    page_size: int
    page_token: str | None
    sync_token: str | None
    request_sync_token: bool
    sort_order: str
    sources: tuple[str, ...]

    def fingerprint(self, *, paging: bool) -> str:
        """Parameters a page token (all of them) or a sync token (the mask and sources) must be used with."""
        parts: tuple[object, ...] = (sorted(self.mask), self.sources, self.sort_order)
        if paging:
            parts += (self.page_size, self.sync_token, self.request_sync_token)
        return hashlib.sha256(repr(parts).encode()).hexdigest()[:16]


def parse_mask(query: Mapping[str, str]) -> frozenset[str]:
    legacy = [p.removeprefix("person.") for p in query.get("requestMask.includeField", "").split(",") if p.strip()]
    paths = [p.strip() for p in query.get("personFields", "").split(",") if p.strip()] or legacy
    if not paths:
        raise errors.invalid_argument(MASK_REQUIRED)
    invalid = next((p for p in paths if p not in PERSON_FIELDS), None)
    if invalid is not None:
        raise errors.invalid_argument(
            f'Invalid personFields mask path: "{invalid}". Valid paths are documented at https://developers.google.com/people/api/rest/v1/people.connections/list.'
        )
    return frozenset(paths)


def parse_page_size(value: str | None) -> int:
    try:
        size = int(value or 0)
    except ValueError:
        raise errors.invalid_argument(f"Invalid value at 'page_size' (TYPE_INT32), \"{value}\"") from None
    if not 0 <= size <= MAX_PAGE_SIZE:
        raise errors.invalid_argument(f"Page size must be between 1 and {MAX_PAGE_SIZE}, inclusive.")
    return size or DEFAULT_PAGE_SIZE


def parse_bool(name: str, value: str | None) -> bool:
    if value in (None, "", "false"):
        return False
    if value == "true":
        return True
    raise errors.invalid_argument(f"Invalid value at '{name}' (TYPE_BOOL), \"{value}\"")


def parse_params(request: Request) -> ListParams:
    query = request.query_params
    sort_order = query.get("sortOrder", SORT_ORDERS[0])
    if sort_order not in SORT_ORDERS:
        raise errors.invalid_argument(f"Invalid value at 'sort_order' (SortOrder), \"{sort_order}\"")
    sources = tuple(sorted(query.getlist("sources")))
    unknown = next((s for s in sources if s not in READ_SOURCES), None)
    if unknown is not None:
        raise errors.invalid_argument(
            f"Invalid value at 'sources' (type.googleapis.com/google.apps.people.v1.ReadSourceType), \"{unknown}\""
        )
    return ListParams(
        mask=parse_mask(query),
        page_size=parse_page_size(query.get("pageSize")),
        page_token=query.get("pageToken") or None,
        sync_token=query.get("syncToken") or None,
        request_sync_token=parse_bool("request_sync_token", query.get("requestSyncToken")),
        sort_order=sort_order,
        sources=sources,
    )


def authorised_account(request: Request, google: GoogleState) -> Account:
    token = access_token(request, google)
    if token is None:
        raise errors.unauthenticated()
    if not CONTACTS_READ.intersection(token.scopes):
        raise errors.scope_insufficient(errors.LIST_CONNECTIONS)
    refused = request.app.state.sandbox.traffic.quotas.admit(request.url.path, token.client_id, token.account)
    if refused is not None:
        raise errors.quota_exceeded(*QUOTA_LIMITS[refused])
    return google.accounts[token.account]


def decode_cursor(
    google: GoogleState, value: str, kind: str, account: Account, fingerprint: str, what: str
) -> dict[str, Any]:
    try:
        payload = google.cursors.decode(value)
    except CursorError:
        raise errors.invalid_argument(f"{what.capitalize()} is invalid.") from None
    if payload.get("kind") != kind or payload.get("sub") != account.sub:
        raise errors.invalid_argument(f"{what.capitalize()} is invalid.")
    if payload.get("params") != fingerprint:
        raise errors.invalid_argument(PARAMS_MUST_MATCH.format(what))
    return payload


def sync_token_expired(google: GoogleState, book: ContactBook, payload: dict[str, Any]) -> bool:
    age = time.time() - float(payload["origin" if google.settings.sync_token_age_from == "full_sync" else "issued"])
    return bool(payload["generation"] != book.sync_generation or age >= google.settings.sync_token_max_age)


def open_listing(google: GoogleState, account: Account, params: ListParams) -> tuple[str, int]:
    """The listing this call reads and the offset to read at: a page token's, or a new snapshot."""
    book = account.book
    if params.page_token:
        payload = decode_cursor(
            google, params.page_token, "page", account, params.fingerprint(paging=True), "page token"
        )
        return payload["listing"], payload["offset"]
    if params.sync_token:
        payload = decode_cursor(
            google, params.sync_token, "sync", account, params.fingerprint(paging=False), "sync token"
        )
        if payload["seq"] > book.seq or payload.get("epoch", 0) != book.sync_epoch:
            raise errors.invalid_argument("Sync token is invalid.")
        if sync_token_expired(google, book, payload):
            raise errors.expired_sync_token(google.settings.expired_sync_token_status)
        return book.open_listing(book.changed_since(payload["seq"]), payload["origin"], incremental=True), 0
    return book.open_listing(book.ordered_names(params.sort_order), time.time(), incremental=False), 0


def next_tokens(
    google: GoogleState, account: Account, params: ListParams, listing_id: str, listing: Listing, end: int
) -> dict[str, str]:
    if end < len(listing.names):
        page = {
            "kind": "page",
            "sub": account.sub,
            "listing": listing_id,
            "offset": end,
            "params": params.fingerprint(paging=True),
        }
        return {"nextPageToken": google.cursors.encode(page)}
    if not params.request_sync_token:
        return {}
    sync = {
        "kind": "sync",
        "sub": account.sub,
        "seq": listing.seq,
        "generation": account.book.sync_generation,
        "epoch": account.book.sync_epoch,
        "origin": listing.origin,
        "issued": time.time(),
        "params": params.fingerprint(paging=False),
    }
    return {"nextSyncToken": google.cursors.encode(sync)}


@router.get("/v1/people/{person}/connections")
async def list_connections(person: str, request: Request, google: GoogleDep) -> Response:
    account = authorised_account(request, google)
    if person != "me":
        raise errors.invalid_argument(f'Resource name "people/{person}" is not valid; only people/me is supported.')
    params = parse_params(request)
    listing_id, offset = open_listing(google, account, params)
    listing = account.book.listing(listing_id)
    if listing is None:
        raise errors.invalid_argument("Page token is invalid.")
    connections = account.book.page(listing, offset, params.page_size, params.mask)
    end = offset + params.page_size
    body: dict[str, Any] = {"connections": connections} if connections else {}
    body.update(next_tokens(google, account, params, listing_id, listing, end))
    if listing.names:
        body.update(totalPeople=len(listing.names), totalItems=len(listing.names))
    return errors.GoogleJSONResponse(body)
