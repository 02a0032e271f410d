"""CalDAV by app password (iCloud, Fastmail, Nextcloud, Radicale): the connect form, and the discovery that runs
before anything is stored (RFC 6764 well-known, RFC 5397 current-user-principal, RFC 4791 calendar-home-set).

The connection's account is the principal URL the server reports, normalised, so two URLs for one account (the
server's root, the principal itself) give one connection. A refusal's reason is one of: `wrong_url` (not a web
address), `unreachable` (no such host, nothing answers, a bad certificate), `not_found` (404, or 403 for this
account), `wrong_password` (401), `not_caldav` (an answer, but not a CalDAV server's), `timeout`, `not_allowed` (the
SSRF guard refused the address)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import quote, unquote, urljoin, urlsplit, urlunsplit

import niquests
from caldav.davclient import DAVClient
from caldav.davobject import DAVObject
from caldav.elements import cdav, dav
from caldav.lib import error

from connectors.caldav.client import AddressRefused, HostNotFound, Resolver, dav_client
from connectors.caldav.settings import CalDAVSettings
from core.models import ACCOUNT_ID_LENGTH, EMAIL_LENGTH
from core.settings import Settings, section
from oauth.config import Account
from oauth.forms import CredentialsRefused, FormField, FormProviderConfig, Preset, Verified

WELL_KNOWN = "/.well-known/caldav"
MAX_WELL_KNOWN_HOPS = 5
PATH_SAFE = "/@:+!$&'()*,;=-._~"
T = TypeVar("T")


@dataclass(frozen=True)
class Discovered:
    principal_url: str
    calendar_home_url: str


def normalised(url: str) -> str:
    """A URL as the hub keys an account by it: scheme and host lower-cased, the default port dropped, the path
    percent-encoded one way and ending in a slash, no query, fragment or credentials."""
    parts = urlsplit(url.strip())
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    port = parts.port
    netloc = host if port is None or port == {"http": 80, "https": 443}.get(scheme) else f"{host}:{port}"
    path = quote(unquote(parts.path or "/"), safe=PATH_SAFE)
    return urlunsplit((scheme, netloc, path if path.endswith("/") else path + "/", "", ""))


def typed_url(text: str) -> str:
    """The server URL as the user typed it, made absolute (`caldav.example.com` means https://caldav.example.com/);
    refused when it is not a web address, or carries a username or password of its own."""
    value = text.strip()
    if "://" not in value:
        value = "https://" + value
    parts = urlsplit(value)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise CredentialsRefused(
            "wrong_url", "The server URL must be a web address, such as https://caldav.example.com/."
        )
    if parts.username is not None or parts.password is not None:
        raise CredentialsRefused(
            "wrong_url", "Put the username and the app password in their own fields, not in the server URL."
        )
    try:
        parts.port  # noqa: B018 (a malformed port raises here)
    except ValueError:
        raise CredentialsRefused("wrong_url", "The server URL has a malformed port.") from None
    return urlunsplit((parts.scheme.lower(), parts.netloc, parts.path or "/", parts.query, ""))


def where(url: str) -> str:
    parts = urlsplit(url)
    return parts.netloc or url


def plainly(url: str, timeout: float, call: Callable[[], T]) -> T:
    """Run a request of the discovery; what can go wrong on the way becomes the user's plain message."""
    try:
        return call()
    except AddressRefused as exc:
        raise CredentialsRefused("not_allowed", f"{exc}.") from None
    except HostNotFound:
        raise CredentialsRefused(
            "unreachable", f"No server called {urlsplit(url).hostname} was found: check the server URL."
        ) from None
    except niquests.exceptions.Timeout:
        raise CredentialsRefused(
            "timeout",
            f"The server at {where(url)} did not answer within {timeout:g} seconds: check the server URL, or try "
            "again later.",
            504,
        ) from None
    except niquests.exceptions.SSLError:
        raise CredentialsRefused(
            "unreachable", f"The server at {where(url)} did not prove who it is (its TLS certificate is not valid)."
        ) from None
    except (niquests.exceptions.ConnectionError, ConnectionError):
        raise CredentialsRefused(
            "unreachable", f"Nothing answers at {where(url)}: check the server URL, or try again later."
        ) from None
    except error.AuthorizationError as exc:
        if exc.status == 403 or exc.reason == "Forbidden":
            raise CredentialsRefused(
                "not_found", "The server does not let this account use that URL (403 Forbidden): check the server URL."
            ) from None
        raise CredentialsRefused(
            "wrong_password",
            "The server refused this username and app password. Check both; many providers (iCloud, Fastmail) "
            "need an app password made for synchub, not your usual password.",
        ) from None
    except error.NotFoundError:
        raise CredentialsRefused("not_found", "Nothing was found at that URL (404): check the server URL.") from None
    except (error.DAVError, ValueError, TypeError, AttributeError) as exc:  # an answer that is not WebDAV
        raise CredentialsRefused(
            "not_caldav", f"The server at {where(url)} answered, but not as a CalDAV server: check the server URL."
        ) from exc


def not_caldav(url: str) -> CredentialsRefused:
    return CredentialsRefused(
        "not_caldav", f"The server at {where(url)} answered, but not as a CalDAV server: check the server URL."
    )


def current_user_principal(client: DAVClient, url: str) -> str | None:
    found = DAVObject(client=client, url=url).get_property(dav.CurrentUserPrincipal())
    return urljoin(url, str(found)) if found else None


def well_known_context(client: DAVClient, url: str, username: str, password: str, timeout: float) -> str | None:
    """Where the server's `/.well-known/caldav` sends a client (RFC 6764 section 5), None if it sends nowhere. Only
    the first request goes out (to the origin the user typed); the hops after it are read from Location headers and
    reached by the principal lookup, each checked by the client's guard."""
    target = urljoin(url, WELL_KNOWN)
    answer = client.session.request(
        "PROPFIND",
        target,
        data=b'<?xml version="1.0" encoding="utf-8"?><d:propfind xmlns:d="DAV:"><d:prop>'
        b"<d:current-user-principal/></d:prop></d:propfind>",
        headers={"Depth": "0", "Content-Type": "application/xml; charset=utf-8"},
        auth=(username, password),
        allow_redirects=False,
        timeout=timeout,
    )
    location = answer.headers.get("Location")
    if answer.status_code in (301, 302, 303, 307, 308) and location:
        return urljoin(target, str(location))
    return None


def discover(
    settings: CalDAVSettings, url: str, username: str, password: str, resolver: Resolver | None = None
) -> Discovered:
    """The account's principal and calendar home, found from the URL the user typed (its root, a context path,
    the principal itself); a server's root (or its well-known address) that is not itself a CalDAV context is
    looked up at the well-known address. A path the user typed is taken as meant: nothing there is a wrong URL.
    Raises CredentialsRefused with the plain reason. Nothing is stored."""
    start = typed_url(url)
    timeout = settings.timeout_seconds
    with dav_client(start, username, password, settings, resolver=resolver) as client:
        try:
            return account_at(client, start, timeout)
        except CredentialsRefused as exc:
            if exc.reason not in ("not_found", "not_caldav") or urlsplit(start).path not in ("/", WELL_KNOWN):
                raise
            first = exc
        context = plainly(start, timeout, lambda: well_known_context(client, start, username, password, timeout))
    if context is None:
        raise first
    with dav_client(context, username, password, settings, resolver=resolver) as client:
        return account_at(client, context, timeout)


def account_at(client: DAVClient, url: str, timeout: float) -> Discovered:
    """The principal `url` reports for the signed-in user, and its calendar home."""
    principal = plainly(url, timeout, lambda: current_user_principal(client, url))
    if principal is None:
        raise not_caldav(url)
    found = principal
    home = plainly(found, timeout, lambda: home_set(client, found))
    if home is None:
        raise not_caldav(found)
    return Discovered(normalised(found), normalised(home))


def home_set(client: DAVClient, principal: str) -> str | None:
    found = DAVObject(client=client, url=principal).get_property(cdav.CalendarHomeSet())
    return urljoin(principal, str(found)) if found else None


def verify(settings: Settings, values: Mapping[str, str]) -> Verified:
    own = section(settings, "caldav", CalDAVSettings)
    assert own is not None
    username, password = values["username"], values["password"]
    if len(username) > EMAIL_LENGTH:
        raise CredentialsRefused("missing", f"The username is longer than {EMAIL_LENGTH} characters.")
    found = discover(own, values["server_url"], username, password)
    if len(found.principal_url) > ACCOUNT_ID_LENGTH:
        raise CredentialsRefused("not_caldav", "The server's address for this account is too long for synchub to keep.")
    return Verified(Account(found.principal_url, username), {"username": username, "password": password})


def dev_note(settings: Settings) -> str | None:
    own = section(settings, "caldav", CalDAVSettings)
    return own.dev_note if own is not None else None


def prefill(account_id: str, label: str | None) -> dict[str, str]:
    return {"server_url": account_id, "username": label or ""}


CALDAV = FormProviderConfig(
    name="caldav",
    display_name="CalDAV",
    title="Connect a CalDAV calendar",
    intro="iCloud, Fastmail, Nextcloud, Radicale and other CalDAV servers: your server's address, your username, "
    "and an app password (make one in your account's security settings; synchub never needs your usual password).",
    fields=(
        FormField(
            "server_url",
            "Server URL",
            type="url",
            placeholder="https://caldav.example.com/",
            presets=(
                Preset("iCloud", "https://caldav.icloud.com/"),
                Preset("Fastmail", "https://caldav.fastmail.com/"),
            ),
            autocomplete="url",
        ),
        FormField("username", "Username", placeholder="you@example.com", autocomplete="username"),
        FormField("password", "App password", type="password", autocomplete="new-password"),
    ),
    verify=verify,
    settings=CalDAVSettings,
    prefill=prefill,
    note=dev_note,
    reconnect_prompt="The server no longer accepts the app password synchub has: enter your new app password.",
)
