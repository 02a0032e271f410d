"""Requests a CalDAV stream makes: a client signed in with the connection's app password, each request counted as
it leaves, each call under the hub's rate buckets and retry policy, and failures named by what the hub must do
(shared/providers.md 5.4: an invalid sync token is 403 at Radicale and SabreDAV, 409 or 412 elsewhere)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote, unquote, urlsplit
from xml.sax.saxutils import escape

import niquests
from caldav.davclient import DAVClient
from caldav.lib import error

from connectors.base import StreamContext
from connectors.caldav.client import dav_client
from connectors.caldav.settings import CalDAVSettings
from core.errors import AuthRevoked, ConnectorError, CursorExpired, RateLimited, Retryable

T = TypeVar("T")

DAV = "DAV:"
CALDAV = "urn:ietf:params:xml:ns:caldav"
CS = "http://calendarserver.org/ns/"
HREF_SAFE = "/:@!$&'()*+,;=~"
VALID_SYNC_TOKEN = "{DAV:}valid-sync-token"  # noqa: S105 (a precondition's name)


def settings_of(ctx: StreamContext) -> CalDAVSettings:
    settings = ctx.settings
    return settings if isinstance(settings, CalDAVSettings) else CalDAVSettings.model_validate(settings.model_dump())


def host_of(ctx: StreamContext) -> str:
    """The server's host: the CalDAV app quota is per server, so one slow iCloud does not throttle a Fastmail."""
    url = ctx.resource.external_id if ctx.resource is not None else (ctx.base_url or "")
    return (urlsplit(url).hostname or "unknown").lower()


@contextmanager
def signed_in(ctx: StreamContext, url: str) -> Iterator[Any]:
    """A client for `url` with the connection's username and app password, sent with the first request (Basic,
    as CalDAV clients do, instead of a 401 round trip per run). Each request that leaves is counted."""
    username, password = ctx.credentials.secret("username"), ctx.credentials.secret("password")
    client: Any = dav_client(url, username, password, settings_of(ctx))
    client.build_auth_object(["basic"])

    def counted(request: Any, **_: Any) -> None:
        ctx.sent()

    client.session.hooks.setdefault("pre_send", []).append(counted)
    try:
        yield client
    finally:
        client.close()


def classify(exc: Exception, what: str) -> ConnectorError:
    """A caldav or HTTP failure as the hub's error to act on."""
    status = getattr(exc, "status", None)
    preconditions = getattr(exc, "preconditions", None) or []
    if VALID_SYNC_TOKEN in preconditions:
        return CursorExpired(f"the CalDAV server no longer knows the sync token of {what}; a full sync is needed")
    if isinstance(exc, error.RateLimitError):
        return RateLimited(f"the CalDAV server throttled {what}", exc.retry_after_seconds, "app")
    if status == 401:
        return AuthRevoked("the CalDAV server refused the app password: enter your new app password")
    if isinstance(exc, niquests.exceptions.Timeout | niquests.exceptions.ConnectionError):
        return Retryable(f"the CalDAV server did not answer {what} ({type(exc).__name__})")
    if isinstance(status, int) and status >= 500:
        return Retryable(f"the CalDAV server failed {what} ({status})")
    if status == 404:
        return ConnectorError(f"the CalDAV server no longer has {what} (404)")
    return ConnectorError(f"the CalDAV server refused {what} ({status or type(exc).__name__})")


def call(ctx: StreamContext, what: str, request: Callable[[], T]) -> T:
    """One provider call under the rate buckets and the retry policy."""

    def once() -> T:
        try:
            return request()
        except (error.DAVError, niquests.exceptions.RequestException) as exc:
            raise classify(exc, what) from exc

    result: T = ctx.attempt(once)
    return result


@dataclass(frozen=True)
class Member:
    """One `DAV:response` of a multistatus: its href (unquoted path) and its found properties as elements."""

    href: str
    raw: str
    props: dict[str, Any]

    def text(self, tag: str) -> str | None:
        found = self.props.get(tag)
        if found is None:
            return None
        value = (found.text or "").strip()
        return value or None


def propfind(client: DAVClient, url: str, props: list[tuple[str, str]], depth: int) -> list[Member]:
    """A PROPFIND of `props` (namespace, name) at `url`; raises the caldav error of its status when it fails."""
    namespaces = {ns for ns, _ in props}
    prefixes = {DAV: "d", CALDAV: "c", CS: "cs"}
    declared = " ".join(f'xmlns:{prefixes[ns]}="{ns}"' for ns in sorted(namespaces | {DAV}))
    wanted = "".join(f"<{prefixes[ns]}:{name}/>" for ns, name in props)
    body = f'<?xml version="1.0" encoding="utf-8"?><d:propfind {declared}><d:prop>{wanted}</d:prop></d:propfind>'
    response = client.propfind(url, body, depth)
    if response.status >= 400:
        kind = error.NotFoundError if response.status == 404 else error.PropfindError
        raise error.error_from_response(kind, response)
    return members(response.tree)


def multiget(client: DAVClient, url: str, hrefs: list[str]) -> list[Member]:
    """One calendar-multiget REPORT (RFC 4791 7.9) for `hrefs`: each found member with its etag and calendar data.
    Built here rather than by caldav's `Calendar.multiget`, which makes an object and joins a URL per event."""
    wanted = "".join(f"<d:href>{escape(quote(href, safe=HREF_SAFE))}</d:href>" for href in hrefs)
    body = (
        '<?xml version="1.0" encoding="utf-8"?><c:calendar-multiget xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:'
        f'caldav"><d:prop><d:getetag/><c:calendar-data/></d:prop>{wanted}</c:calendar-multiget>'
    )
    response = client.report(url, body, None)  # Depth is not sent (RFC 4791 7.9)
    if response.status >= 400:
        kind = error.NotFoundError if response.status == 404 else error.ReportError
        raise error.error_from_response(kind, response)
    return members(response.tree)


def members(tree: Any) -> list[Member]:
    found: list[Member] = []
    if tree is None:
        return found
    for response in tree.iter(f"{{{DAV}}}response"):
        href = response.findtext(f"{{{DAV}}}href")
        if not href:
            continue
        props: dict[str, Any] = {}
        for propstat in response.iter(f"{{{DAV}}}propstat"):
            status = propstat.findtext(f"{{{DAV}}}status") or ""
            if " 200" not in status:
                continue
            for prop in propstat.iter(f"{{{DAV}}}prop"):
                for child in prop:
                    if isinstance(child.tag, str):
                        props[child.tag] = child
        found.append(Member(path_of(href.strip()), href.strip(), props))
    return found


def path_of(href: str) -> str:
    """An href as the connector keys it: the unquoted path (servers differ on what they percent-encode)."""
    return unquote(urlsplit(href).path)
