"""The one way the connector reaches a CalDAV server: a caldav library client for a URL the user gave.

Every request the connector makes goes through `dav_client`, so the SSRF guard (https only, public addresses,
each redirect checked again, unless the deployment allows private hosts) lives here and nowhere else.

The guard sits in the client's HTTP session: before each request leaves (a redirect's included, since the session
sends each hop itself) its scheme is checked and its host resolved once through a `Resolver`, whose every address
must be public; the session's own resolver then hands the connection exactly those checked addresses, so no second
DNS lookup can swap them (the TLS name and Host header stay the host's own). No proxy or .netrc from the
environment is used."""

from __future__ import annotations

import socket
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Any
from urllib.parse import urlsplit

import niquests
from caldav.davclient import DAVClient
from urllib3_future.contrib.resolver.protocols import BaseResolver, ProtocolResolver

from connectors.caldav.settings import CalDAVSettings
from core.errors import ConnectorError, Retryable

Address = IPv4Address | IPv6Address
Record = tuple[socket.AddressFamily, socket.SocketKind, int, str | bytes, tuple[str, int] | tuple[str, int, int, int]]
"""One `socket.getaddrinfo` answer."""


class AddressRefused(ConnectorError):
    """The guard refused a URL (plain http, or a host with a non-public address) before anything was sent."""


class HostNotFound(Retryable):
    """The server's name does not resolve: a typo when connecting, a passing DNS failure during a sync."""


def is_public(address: Address) -> bool:
    """A global unicast address: not loopback, private, link-local, multicast, reserved, unspecified, shared
    (100.64/10) or documentation space, and not an IPv4 address wrapped in IPv6 (which would bypass the rest)."""
    if isinstance(address, IPv6Address) and (address.ipv4_mapped or address.sixtofour or address.teredo):
        return False
    return address.is_global and not (
        address.is_multicast
        or address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_reserved
        or address.is_unspecified
    )


class Resolver:
    """How the guard turns a host into addresses, and which addresses it lets the connector reach: the system's
    resolver and public addresses only. Tests give names their own addresses, or count a loopback one as public."""

    def addresses(self, host: str, port: int) -> list[Address]:
        try:
            found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            raise HostNotFound(f"the server name {host} does not resolve") from exc
        return list(dict.fromkeys(ip_address(str(info[4][0]).split("%", 1)[0]) for info in found))

    def allows(self, address: Address) -> bool:
        return is_public(address)


class AnyAddress(Resolver):
    """The deployment allows private hosts (tests, the dev hub): every address is reachable."""

    def __init__(self, inner: Resolver) -> None:
        self.inner = inner

    def addresses(self, host: str, port: int) -> list[Address]:
        return self.inner.addresses(host, port)

    def allows(self, address: Address) -> bool:
        return True


class CheckedAddresses(BaseResolver):
    """The session's resolver: each (host, port) resolves once through the guard's `Resolver` and only if every
    address is allowed; the connection then goes to those very addresses."""

    protocol = ProtocolResolver.CUSTOM
    implementation = "synchub-guard"

    def __init__(self, resolver: Resolver) -> None:
        super().__init__(None)
        self.resolver = resolver
        self.checked: dict[tuple[str, int], list[Address]] = {}

    def check(self, host: str, port: int) -> list[Address]:
        key = (host.lower(), port)
        if key not in self.checked:
            found = self.resolver.addresses(host, port)
            refused = [address for address in found if not self.resolver.allows(address)]
            if refused or not found:
                raise AddressRefused(
                    f"{host} resolves to a private or reserved address ({refused[0] if refused else 'none'}): "
                    "synchub only reaches CalDAV servers on the public internet"
                )
            self.checked[key] = found
        return self.checked[key]

    def close(self) -> None:
        self.checked.clear()

    def is_available(self) -> bool:
        return True

    def getaddrinfo(
        self,
        host: bytes | str | None,
        port: str | int | None,
        family: socket.AddressFamily,
        type: socket.SocketKind,
        proto: int = 0,
        flags: int = 0,
        *,
        quic_upgrade_via_dns_rr: bool = False,
    ) -> list[Record]:
        name = host.decode() if isinstance(host, bytes) else str(host or "")
        number = int(port or 0)
        records: list[Record] = []
        for address in self.check(name.strip("[]"), number):
            if isinstance(address, IPv6Address) and family in (socket.AF_UNSPEC, socket.AF_INET6):
                records.append((socket.AF_INET6, type, proto, "", (str(address), number, 0, 0)))
            elif isinstance(address, IPv4Address) and family in (socket.AF_UNSPEC, socket.AF_INET):
                records.append((socket.AF_INET, type, proto, "", (str(address), number)))
        return records


class GuardedSession(niquests.Session):
    """A niquests session that checks each request's scheme and host before it leaves, redirects included."""

    def __init__(self, schemes: frozenset[str], addresses: CheckedAddresses, **kwargs: Any) -> None:
        super().__init__(resolver=addresses, **kwargs)
        self.schemes, self.addresses = schemes, addresses
        self.trust_env = False  # no proxy, .netrc or CA override from the environment: only the checked address

    def send(self, request: Any, **kwargs: Any) -> Any:
        parts = urlsplit(str(request.url))
        if parts.scheme not in self.schemes:
            raise AddressRefused(f"{parts.scheme}:// is not allowed: synchub only reaches CalDAV servers over https://")
        if not parts.hostname:
            raise AddressRefused("the server URL has no host")
        self.addresses.check(parts.hostname, parts.port or (443 if parts.scheme == "https" else 80))
        return super().send(request, **kwargs)


def guarded_session(
    settings: CalDAVSettings, resolver: Resolver | None = None, multiplexed: bool = False
) -> GuardedSession:
    """The HTTP session every request to a CalDAV server goes through (see the module's docstring)."""
    policy = resolver or Resolver()
    if settings.allow_private_hosts:
        session = GuardedSession(
            frozenset({"http", "https"}), CheckedAddresses(AnyAddress(policy)), multiplexed=multiplexed
        )
    else:
        session = GuardedSession(frozenset({"https"}), CheckedAddresses(policy), multiplexed=multiplexed)
    session.verify = settings.ca_bundle or True
    return session


def dav_client(
    url: str, username: str, password: str, settings: CalDAVSettings, *, resolver: Resolver | None = None
) -> DAVClient:
    """A client signed in as `username` at `url` (a server root, a principal or a calendar URL); `resolver` is
    how the guard resolves and judges hosts (the system's resolver and public addresses only by default)."""
    client = DAVClient(
        url=url,
        username=username,
        password=password,
        timeout=settings.timeout_seconds,  # type: ignore[arg-type]  # niquests takes seconds as a float
        enable_rfc6764=False,  # no DNS SRV/TXT lookups: the URL the user typed is the only address tried
        require_tls=not settings.allow_private_hosts,
        ssl_verify_cert=settings.ca_bundle or True,
    )
    multiplexed = bool(getattr(client.session, "multiplexed", False))
    client.session.close()
    client.session = guarded_session(settings, resolver, multiplexed)
    return client
