"""Calendar API v3 routes: `users/me/calendarList`, `calendars/{id}/events` (page and sync tokens, 410, windows,
expansion), `calendars/{id}/events/watch` and `channels/stop`, with Calendar's scopes, error shapes and quotas."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from starlette.responses import Response

from sandbox.cursors import CursorError
from sandbox.google.calendar import errors as cal_errors
from sandbox.google.calendar import render
from sandbox.google.calendar.channels import Channel
from sandbox.google.calendar.store import Calendar, CalendarBook, Event, UnknownCalendar, resource_id
from sandbox.google.deps import GoogleDep
from sandbox.google.errors import UNAUTHENTICATED_MESSAGE, ApiError, GoogleJSONResponse, error_info
from sandbox.google.scopes import AUTH
from sandbox.google.state import Account, GoogleState, IssuedToken
from sandbox.google.token import access_token

BASE = "/calendar/v3"
PUBLIC_BASE = "https://www.googleapis.com/calendar/v3"
LIST_SCOPES = frozenset(
    AUTH + s for s in ("calendar", "calendar.readonly", "calendar.calendarlist", "calendar.calendarlist.readonly")
)
EVENTS_SCOPES = frozenset(
    AUTH + s
    for s in (
        "calendar",
        "calendar.readonly",
        "calendar.events",
        "calendar.events.readonly",
        "calendar.events.owned",
        "calendar.events.owned.readonly",
        "calendar.app.created",
        "calendar.events.freebusy",
        "calendar.events.public.readonly",
    )
)
STOP_SCOPES = LIST_SCOPES | EVENTS_SCOPES
NOT_WITH_SYNC_TOKEN = (
    "iCalUID", "orderBy", "privateExtendedProperty", "q", "sharedExtendedProperty", "timeMin", "timeMax", "updatedMin",
)  # fmt: skip
LIST_NOT_WITH_SYNC_TOKEN = ("minAccessRole", "showOwnOrganizationOnly")
ROLE_RANK = {"freeBusyReader": 0, "reader": 1, "writerWithoutPrivateAccess": 2, "writer": 2, "owner": 3}
FORBIDDEN_SYNC_MESSAGE = "The {0} parameter cannot be used together with syncToken."  # UNVERIFIED wording

router = APIRouter(prefix=BASE)


def error(code: int, reason: str, message: str | None = None, **kwargs: Any) -> ApiError:
    return ApiError(GoogleJSONResponse(cal_errors.error_body(code, reason, message, **kwargs), status_code=code))


def bad_request(message: str, location: str | None = None, reason: str = "invalid") -> ApiError:
    return error(400, reason, message, location=location)


def unauthenticated() -> ApiError:
    body = cal_errors.error_body(
        401, "authError", "Invalid Credentials", location="Authorization", location_type="header"
    )
    body["error"].update(message=UNAUTHENTICATED_MESSAGE, status="UNAUTHENTICATED")
    headers = {"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/", error="invalid_token"'}
    return ApiError(GoogleJSONResponse(body, status_code=401, headers=headers))


def insufficient(method: str) -> ApiError:
    metadata = {"service": cal_errors.SERVICE, "method": method}
    body = cal_errors.error_body(403, "insufficientPermissions", "Insufficient Permission")
    body["error"].update(
        message="Request had insufficient authentication scopes.",
        status="PERMISSION_DENIED",
        details=[error_info("ACCESS_TOKEN_SCOPE_INSUFFICIENT", "googleapis.com", metadata)],
    )
    return ApiError(GoogleJSONResponse(body, status_code=403))


def authorised(request: Request, google: GoogleState, allowed: frozenset[str], method: str) -> IssuedToken:
    token = access_token(request, google)
    if token is None:
        raise unauthenticated()
    if not allowed.intersection(token.scopes):
        raise insufficient(method)
    refused = request.app.state.sandbox.traffic.quotas.admit(request.url.path, token.client_id, token.account)
    if refused == "user":
        raise error(google.settings.calendar_rate_limit_status, "rateLimitExceeded")
    if refused == "app":
        raise error(403, "quotaExceeded")
    return token


def account_of(google: GoogleState, token: IssuedToken) -> Account:
    return google.accounts[token.account]


def calendar_of(book: CalendarBook, calendar_id: str) -> Calendar:
    try:
        calendar = book.resolve(calendar_id)
    except UnknownCalendar:
        raise error(404, "notFound") from None
    if calendar.deleted:
        raise error(404, "notFound")
    return calendar


def parse_int(value: str | None, name: str, default: int, maximum: int) -> int:
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise bad_request(f"Invalid value '{value}'. Values must be within the range: [1, {maximum}]", name) from None
    if not 1 <= number <= maximum:
        raise bad_request(f"Invalid value '{value}'. Values must be within the range: [1, {maximum}]", name)
    return number


def parse_bool(value: str | None, name: str) -> bool | None:
    if value is None:
        return None
    if value in ("true", "false"):
        return value == "true"
    raise bad_request(f"Invalid boolean value: '{value}'.", name)


def parse_time(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise bad_request("Bad Request", name, reason="badRequest") from None
    if moment.tzinfo is None:
        raise bad_request("Bad Request", name, reason="badRequest")
    return moment


def decode(google: GoogleState, value: str, kind: str, account: Account, what: str) -> dict[str, Any]:
    try:
        payload = google.cursors.decode(value)
    except CursorError:
        payload = {}
    if payload.get("kind") != kind or payload.get("sub") != account.sub:
        raise bad_request(f"Invalid {what} value.", what)
    return payload


def full_sync_required() -> ApiError:
    return error(410, "fullSyncRequired", location="syncToken")


def sync_token_stale(google: GoogleState, epoch: int, payload: dict[str, Any]) -> bool:
    max_age = google.settings.calendar_sync_token_max_age
    too_old = max_age is not None and time.time() - float(payload["issued"]) >= max_age
    return payload["epoch"] != epoch or too_old


def paged(items: Iterator[tuple[tuple[int, int], Any]], size: int) -> tuple[list[Any], Any]:
    """Up to `size` bodies, and the key of the last one when more follow (None at the end)."""
    bodies: list[Any] = []
    last: tuple[int, int] | None = None
    for key, body in items:
        if len(bodies) == size:
            return bodies, list(last) if last else None
        bodies.append(body)
        last = key
    return bodies, None


def keyed(
    calendar: Calendar, after: tuple[int, int], upto: int, produce: Callable[[Event], Iterator[render.Item]]
) -> Iterator[tuple[tuple[int, int], Any]]:
    """Items of the events changed in (after, upto], in change order, each keyed (event seq, position)."""
    for event in calendar.changed_after(after[0] - 1):
        if event.seq > upto:
            return
        for position, body in produce(event):
            if (event.seq, position) > after:
                yield (event.seq, position), body


@router.get("/users/me/calendarList")
async def calendar_list(request: Request, google: GoogleDep) -> Response:
    token = authorised(request, google, LIST_SCOPES, "calendar.v3.CalendarList.List")
    account = account_of(google, token)
    book, query = account.calendars, request.query_params
    size = parse_int(query.get("maxResults"), "maxResults", 100, 250)
    if query.get("pageToken"):
        page = decode(google, query["pageToken"], "cal-list-page", account, "pageToken")
        params, since, upto, after = page["params"], page["since"], page["upto"], page["after"]
    else:
        params = {
            "showDeleted": bool(parse_bool(query.get("showDeleted"), "showDeleted")),
            "showHidden": bool(parse_bool(query.get("showHidden"), "showHidden")),
            "minAccessRole": query.get("minAccessRole"),
        }
        since, upto = None, book.list_seq
        if query.get("syncToken"):
            forbidden = next((p for p in LIST_NOT_WITH_SYNC_TOKEN if p in query), None)
            if forbidden is not None:
                raise bad_request(FORBIDDEN_SYNC_MESSAGE.format(forbidden), forbidden)
            sync = decode(google, query["syncToken"], "cal-list-sync", account, "syncToken")
            if sync_token_stale(google, book.list_epoch, sync):
                raise full_sync_required()
            since = sync["seq"]
        if params["minAccessRole"] is not None and params["minAccessRole"] not in ROLE_RANK:
            raise bad_request(f"Invalid value '{params['minAccessRole']}'.", "minAccessRole")
        after = since or 0
    entries = [c for c in book.calendars.values() if after < c.list_seq <= upto]
    if since is None:
        minimum = ROLE_RANK.get(params["minAccessRole"] or "freeBusyReader", 0)
        entries = [
            c for c in entries if (params["showDeleted"] or not c.deleted) and ROLE_RANK[c.access_role] >= minimum
        ]
    page_entries = entries[:size]
    body: dict[str, Any] = {"kind": "calendar#calendarList", "etag": f'"p{book.list_seq:016d}"'}
    if len(entries) > size:
        next_page = {
            "kind": "cal-list-page",
            "sub": account.sub,
            "params": params,
            "since": since,
            "upto": upto,
            "after": page_entries[-1].list_seq,
        }
        body["nextPageToken"] = google.cursors.encode(next_page)
    elif since is None and google.settings.calendar_omit_sync_token:
        pass  # the reported quirk: a full listing that ends without a way to follow its changes
    else:
        sync = {
            "kind": "cal-list-sync",
            "sub": account.sub,
            "seq": upto,
            "epoch": book.list_epoch,
            "issued": time.time(),
        }
        body["nextSyncToken"] = google.cursors.encode(sync)
    body["items"] = [render.calendar_entry(c) for c in page_entries]
    return GoogleJSONResponse(body)


def event_params(query: Any) -> dict[str, Any]:
    time_min, time_max = parse_time(query.get("timeMin"), "timeMin"), parse_time(query.get("timeMax"), "timeMax")
    if time_min is not None and time_max is not None and time_min >= time_max:
        raise error(400, "timeRangeEmpty", location="timeMax")
    return {
        "singleEvents": bool(parse_bool(query.get("singleEvents"), "singleEvents")),
        "showDeleted": bool(parse_bool(query.get("showDeleted"), "showDeleted")),
        "timeMin": query.get("timeMin"),
        "timeMax": query.get("timeMax"),
    }


@router.get("/calendars/{calendar_id}/events")
async def list_events(calendar_id: str, request: Request, google: GoogleDep) -> Response:
    token = authorised(request, google, EVENTS_SCOPES, "calendar.v3.Events.List")
    account = account_of(google, token)
    calendar = calendar_of(account.calendars, calendar_id)
    query = request.query_params
    size = parse_int(query.get("maxResults"), "maxResults", 250, 2500)
    if query.get("pageToken"):
        page = decode(google, query["pageToken"], "cal-events-page", account, "pageToken")
        if page["cal"] != calendar.id:
            raise bad_request("Invalid pageToken value.", "pageToken")
        if page["since"] is not None and page["epoch"] != calendar.sync_epoch:
            raise full_sync_required()
        params, since, upto, after = page["params"], page["since"], page["upto"], tuple(page["after"])
    elif query.get("syncToken"):
        forbidden = next((p for p in NOT_WITH_SYNC_TOKEN if p in query), None)
        if forbidden is not None:
            raise bad_request(FORBIDDEN_SYNC_MESSAGE.format(forbidden), forbidden)
        if query.get("showDeleted") == "false":
            raise bad_request("showDeleted cannot be false together with syncToken.", "showDeleted")
        sync = decode(google, query["syncToken"], "cal-events-sync", account, "syncToken")
        if sync["cal"] != calendar.id or sync_token_stale(google, calendar.sync_epoch, sync):
            raise full_sync_required()
        params = {**event_params(query), "showDeleted": True}
        since, upto, after = sync["seq"], calendar.seq, (sync["seq"], 1 << 30)
    else:
        params = event_params(query)
        since, upto, after = None, calendar.seq, (0, -1)
    if google.settings.calendar_short_pages:
        size = max(1, size // 2)
    produce = producer(calendar, params, incremental=since is not None)
    items, last = paged(keyed(calendar, after, upto, produce), size)  # type: ignore[arg-type]
    body = render.events_envelope(calendar)
    if last is not None:
        next_page = {
            "kind": "cal-events-page",
            "sub": account.sub,
            "cal": calendar.id,
            "params": params,
            "since": since,
            "upto": upto,
            "after": last,
            "epoch": calendar.sync_epoch,
        }
        body["nextPageToken"] = google.cursors.encode(next_page)
    elif since is None and google.settings.calendar_omit_sync_token:
        pass  # the reported quirk: a full listing that ends without a way to follow its changes
    else:
        sync = {
            "kind": "cal-events-sync",
            "sub": account.sub,
            "cal": calendar.id,
            "seq": upto,
            "epoch": calendar.sync_epoch,
            "issued": time.time(),
        }
        body["nextSyncToken"] = google.cursors.encode(sync)
    body["items"] = items
    return GoogleJSONResponse(body)


def producer(calendar: Calendar, params: dict[str, Any], incremental: bool) -> Callable[[Event], Iterator[render.Item]]:
    single = params["singleEvents"]
    if incremental:
        return lambda event: render.changed_items(event, calendar, single)
    time_min = parse_time(params["timeMin"], "timeMin")
    time_max = parse_time(params["timeMax"], "timeMax")
    show_deleted = params["showDeleted"]
    return lambda event: render.full_items(event, calendar, single, show_deleted, time_min, time_max)


async def json_body(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.body() or b"{}")
    except ValueError:
        raise bad_request("Parse Error", reason="parseError") from None
    if not isinstance(body, dict):
        raise bad_request("Parse Error", reason="parseError")
    return body


def checked_channel(google: GoogleState, body: dict[str, Any], client_id: str) -> tuple[str, str, int]:
    """The channel id, address and expiration (Unix ms) a watch request asks for."""
    channel_id, kind, address = str(body.get("id") or ""), body.get("type"), str(body.get("address") or "")
    if not channel_id:
        raise bad_request("Required", "resource.id", reason="required")
    if len(channel_id) > 64:
        raise bad_request("Channel id must be at most 64 characters.", "resource.id")
    if kind not in ("web_hook", "webhook"):
        raise bad_request(f"Invalid value for type: {kind}", "resource.type", reason="push.channelTypeInvalid")
    if not address:
        raise bad_request("Required", "resource.address", reason="required")
    if not address.startswith(("https://", "http://")) or (
        google.settings.calendar_require_https and not address.startswith("https://")
    ):
        raise bad_request(f"WebHook callback must be HTTPS: {address}", reason="push.webhookUrlNotHttps")
    if (client_id, channel_id) in google.channels:
        raise bad_request(f"Channel id {channel_id} not unique", reason="channelIdNotUnique")
    now_ms = int(time.time() * 1000)
    settings = google.settings
    ttl = settings.calendar_channel_default_ttl
    params = body.get("params") or {}
    if isinstance(params, dict) and params.get("ttl"):
        try:
            ttl = float(params["ttl"])
        except ValueError:
            raise bad_request("Invalid ttl.", "resource.params.ttl") from None
    expiration = now_ms + int(min(ttl, settings.calendar_channel_max_ttl) * 1000)
    if body.get("expiration"):
        try:
            asked = int(body["expiration"])
        except (TypeError, ValueError):
            raise bad_request("Invalid expiration.", "resource.expiration") from None
        expiration = max(now_ms, min(asked, now_ms + int(settings.calendar_channel_max_ttl * 1000)))
    return channel_id, address, expiration


@router.post("/calendars/{calendar_id}/events/watch")
async def watch_events(calendar_id: str, request: Request, google: GoogleDep) -> Response:
    token = authorised(request, google, EVENTS_SCOPES, "calendar.v3.Events.Watch")
    account = account_of(google, token)
    calendar = calendar_of(account.calendars, calendar_id)
    body = await json_body(request)
    channel_id, address, expiration = checked_channel(google, body, token.client_id)
    channel_token = body.get("token")
    channel = Channel(
        id=channel_id,
        client_id=token.client_id,
        account=account.email,
        calendar_id=calendar.id,
        resource_id=resource_id(calendar),
        resource_uri=f"{PUBLIC_BASE}/calendars/{quote(calendar_id, safe='')}/events?alt=json",
        address=address,
        token=None if channel_token is None else str(channel_token),
        expiration_ms=expiration,
        created=time.time(),
    )
    google.channels[(token.client_id, channel_id)] = channel
    google.sender.send(channel, "sync")
    answer: dict[str, Any] = {
        "kind": "api#channel",
        "id": channel.id,
        "resourceId": channel.resource_id,
        "resourceUri": channel.resource_uri,
    }
    if channel.token is not None:
        answer["token"] = channel.token
    answer["expiration"] = str(channel.expiration_ms)
    return GoogleJSONResponse(answer)


@router.post("/channels/stop")
async def stop_channel(request: Request, google: GoogleDep) -> Response:
    token = authorised(request, google, STOP_SCOPES, "calendar.v3.Channels.Stop")
    body = await json_body(request)
    channel_id = str(body.get("id") or "")
    channel = google.channels.get((token.client_id, channel_id))
    if channel is None or channel.stopped is not None or channel.resource_id != body.get("resourceId"):
        message = f"Channel '{channel_id}' not found for project '1000000000000'"
        raise error(404, "notFound", message)
    channel.stopped = time.time()
    return Response(status_code=204)
