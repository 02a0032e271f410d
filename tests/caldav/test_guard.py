"""The SSRF guard in `dav_client`: https only, public addresses only, the connection to the very address that was
checked, and every redirect checked again; a deployment setting allows plain http and private hosts."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from ipaddress import ip_address
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from connectors.caldav.client import Address, AddressRefused, Resolver, dav_client, is_public
from connectors.caldav.settings import CalDAVSettings
from oauth.forms import CredentialsRefused
from oauth.providers.caldav import discover
from tests.caldav.hub import Hub, certificate, hub_with, web_page


class Names(Resolver):
    """A resolver with its own table of names, counting `public` addresses as public (loopback ones in a test)."""

    def __init__(self, table: dict[str, str], public: set[str] = frozenset()) -> None:  # type: ignore[assignment]
        self.table, self.public = table, {ip_address(a) for a in public}

    def addresses(self, host: str, port: int) -> list[Address]:
        return [ip_address(self.table.get(host, host))]

    def allows(self, address: Address) -> bool:
        return address in self.public or is_public(address)


@pytest.fixture(scope="module")
def production_hub(
    hub_env: dict[str, str], engine: Engine, sessions: sessionmaker[Session], jwt_secret: str
) -> Iterator[Hub]:
    """A hub with the CalDAV settings a deployment has by default: no private hosts, https only."""
    yield from hub_with(hub_env, engine, sessions, jwt_secret)


def test_plain_http_and_private_addresses_are_refused_before_anything_is_sent(production_hub: Hub) -> None:
    user = f"guard-{uuid.uuid4().hex[:8]}"
    browser = production_hub.browser(user)
    with web_page() as (plain, hits):
        port = plain.rsplit(":", 1)[1]
        answers = {
            url: production_hub.api_connect(browser, url, "ada", "app-password")
            for url in (
                plain,
                f"https://127.0.0.1:{port}/",
                f"https://[::ffff:127.0.0.1]:{port}/",
                f"https://10.1.2.3:{port}/",
            )
        }
    reasons = {url: (answer.status_code, answer.json()["reason"]) for url, answer in answers.items()}
    assert set(reasons.values()) == {(400, "not_allowed")}, reasons
    assert "https://" in answers[plain].json()["detail"]
    assert "private or reserved address (127.0.0.1)" in answers[f"https://127.0.0.1:{port}/"].json()["detail"]
    assert hits == [], "a refused URL must not be asked anything"
    assert production_hub.stored(user) == {"connections": 0, "credentials": 0, "audit": 0}


def test_a_public_looking_name_that_resolves_to_loopback_is_refused(tmp_path: Path) -> None:
    tls = certificate(tmp_path, "calendar.example.com")
    settings = CalDAVSettings(ca_bundle=str(tls[0]), timeout_seconds=5)
    with web_page(host="127.0.0.1", tls=tls) as (url, hits):
        port = url.rsplit(":", 1)[1].rstrip("/")
        named = f"https://calendar.example.com:{port}/"
        with pytest.raises(CredentialsRefused) as refused:
            discover(settings, named, "ada", "app-password", resolver=Names({"calendar.example.com": "127.0.0.1"}))
        assert refused.value.reason == "not_allowed" and "127.0.0.1" in refused.value.detail
        assert hits == []
        # The same name, where the guard counts 127.0.0.1 as public: the request goes to the checked address,
        # with the name's own TLS certificate check (a web page there, so not CalDAV).
        resolver = Names({"calendar.example.com": "127.0.0.1"}, public={"127.0.0.1"})
        with pytest.raises(CredentialsRefused) as answered:
            discover(settings, named, "ada", "app-password", resolver=resolver)
        assert answered.value.reason == "not_caldav" and hits, (answered.value.detail, hits)


def test_each_redirect_is_checked_again(tmp_path: Path) -> None:
    tls = certificate(tmp_path, "calendar.example.com", "inside.example.com")
    settings = CalDAVSettings(ca_bundle=str(tls[0]), timeout_seconds=5)
    with web_page(host="127.0.0.2", tls=tls) as (inside, inside_hits):
        inner = f"https://inside.example.com:{inside.rsplit(':', 1)[1]}"
        table = {"calendar.example.com": "127.0.0.1", "inside.example.com": "127.0.0.2"}
        resolver = Names(table, public={"127.0.0.1"})
        why = {
            inner: "inside.example.com resolves to a private or reserved address (127.0.0.2)",
            inner.replace("https://", "http://"): "http:// is not allowed",
        }
        for target, reason in why.items():
            with web_page(redirect=target, tls=tls) as (outside, outside_hits):
                start = f"https://calendar.example.com:{outside.rsplit(':', 1)[1]}"
                with pytest.raises(CredentialsRefused) as refused:
                    discover(settings, start, "ada", "app-password", resolver=resolver)
                assert refused.value.reason == "not_allowed" and reason in refused.value.detail, refused.value.detail
                client = dav_client(start + "/.well-known/caldav", "ada", "app-password", settings, resolver=resolver)
                with (
                    client,
                    pytest.raises(AddressRefused, match=re.escape(reason)),
                ):  # a redirect the library follows itself
                    client.propfind(start + "/.well-known/caldav")
                assert "PROPFIND /.well-known/caldav" in outside_hits
        assert inside_hits == [], "the private address behind the redirect was reached"
