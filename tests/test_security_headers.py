"""Every answer of the hub carries the security headers, and its HTML has nothing the CSP would block."""

from __future__ import annotations

from collections.abc import Callable
from html.parser import HTMLParser

import httpx
import pytest

from tests import signin

HTML = {"Accept": "text/html"}


def directives(csp: str) -> dict[str, list[str]]:
    parts = (part.split() for part in csp.split(";") if part.strip())
    return {name.lower(): values for name, *values in parts}


def assert_security_headers(response: httpx.Response, cache: str = "no-store") -> None:
    headers = response.headers
    assert "content-security-policy" in headers, f"{response.request.url} has no CSP"
    csp = directives(headers["content-security-policy"])
    assert csp["default-src"] == ["'self'"]
    assert csp["script-src"] == ["'self'"], "scripts come only from the hub's own files: no inline, no eval"
    assert csp["frame-ancestors"] == ["'none'"]
    assert csp["object-src"] == ["'none'"] and csp["base-uri"] == ["'none'"]
    assert headers["x-content-type-options"] == "nosniff"
    # same-origin, not no-referrer: the browser then still sends `Origin` on the page's own POSTs.
    assert headers["referrer-policy"] == "same-origin"
    assert headers["x-frame-options"] == "DENY"
    assert headers["cache-control"] == cache


class InlineFinder(HTMLParser):
    """Collects what a CSP without 'unsafe-inline' would block, and every URL the page loads."""

    def __init__(self) -> None:
        super().__init__()
        self.blocked: list[str] = []
        self.loads: list[str] = []
        self._in: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = dict(attrs)
        self.blocked += [f"<{tag} {name}=...>" for name, _ in attrs if name.startswith("on") or name == "style"]
        if tag == "style":
            self.blocked.append("<style>")
        if tag == "script" and not named.get("src"):
            self.blocked.append("<script> without src")
        for name in ("src", "href"):
            if tag in ("script", "link", "img") and named.get(name):
                self.loads.append(named[name] or "")
        self._in = tag

    def handle_data(self, data: str) -> None:
        if self._in == "script" and data.strip():
            self.blocked.append("inline script text")

    def handle_endtag(self, tag: str) -> None:
        self._in = None


def inspect_html(body: str) -> InlineFinder:
    finder = InlineFinder()
    finder.feed(body)
    return finder


def test_the_settings_page_carries_the_headers_and_no_inline_code(live_api: str, jwt_secret: str) -> None:
    response = signin.browser(live_api, jwt_secret).get(f"{live_api}/", headers=HTML)
    assert response.status_code == 200 and "<h1" in response.text
    assert_security_headers(response)
    page = inspect_html(response.text)
    assert page.blocked == []
    assert page.loads and all(url.startswith("/static/") for url in page.loads)
    for url in page.loads:
        asset = httpx.get(f"{live_api}{url}")
        assert asset.status_code == 200
        assert_security_headers(asset, cache="no-cache")


def test_the_not_signed_in_page_carries_the_headers(live_api: str) -> None:
    response = httpx.get(f"{live_api}/", headers=HTML)
    assert response.status_code == 401
    assert_security_headers(response)
    assert inspect_html(response.text).blocked == []


def test_api_answers_carry_the_headers(live_api: str, user_token: Callable[..., str]) -> None:
    ok = httpx.get(f"{live_api}/api/v1/connections", headers={"Authorization": f"Bearer {user_token()}"})
    assert ok.status_code == 200
    assert_security_headers(ok)
    refused = httpx.post(f"{live_api}/api/v1/connections/00000000-0000-0000-0000-000000000000/pause")
    assert refused.status_code in (401, 404, 405)
    assert_security_headers(refused)
    assert_security_headers(httpx.get(f"{live_api}/no/such/route"))


@pytest.mark.parametrize("path", ["/healthz", "/openapi.json"])
def test_health_and_openapi_carry_the_headers(live_api: str, path: str) -> None:
    response = httpx.get(f"{live_api}{path}")
    assert response.status_code == 200
    assert_security_headers(response)


def test_docs_load_swagger_ui_from_the_hub_itself_with_no_inline_code(live_api: str) -> None:
    response = httpx.get(f"{live_api}/docs", headers=HTML)
    assert response.status_code == 200
    assert_security_headers(response)
    page = inspect_html(response.text)
    assert page.blocked == []
    scripts = [url for url in page.loads if url.endswith(".js")]
    assert any("swagger-ui-bundle" in url for url in scripts) and len(scripts) >= 2, "the bundle and a start-up file"
    for url in page.loads:
        assert url.startswith("/static/"), f"/docs loads {url} from elsewhere"
        asset = httpx.get(f"{live_api}{url}")
        assert asset.status_code == 200 and len(asset.content) > 0
        assert_security_headers(asset, cache="no-cache")
