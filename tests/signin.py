"""Signing a test browser in as a user would: the CRM's one-time sign-in link, then the hub's own session.

The browser it gives sends what a real one sends from the hub's page: `Origin` and the page's CSRF token on
every request to the hub (the token as `X-CSRF-Token`, which the hub accepts beside the form field), and, for the
JSON API, the CRM's ordinary token as `Authorization: Bearer`, as the CRM's own code calling the API would."""

from __future__ import annotations

import re
from typing import Any

import httpx

from core.identity import issue_signin_token, issue_token

CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')


def signin_link(hub_url: str, jwt_secret: str, user: str, workspace: str, next: str = "/", ttl: int = 60) -> str:
    token = issue_signin_token(jwt_secret, user, workspace, ttl)
    return str(httpx.URL(f"{hub_url}/session", params={"token": token, "next": next}))


def csrf_of(page: httpx.Response) -> str:
    found = CSRF_FIELD.search(page.text)
    assert found, f"no CSRF token on {page.request.url}: {page.status_code} {page.text[:300]}"
    return found.group(1)


def sign_in(client: httpx.Client, hub_url: str, jwt_secret: str, user: str, workspace: str) -> str:
    """Open a fresh sign-in link in `client`; return the session's CSRF token, read from the settings page."""
    answer = client.get(signin_link(hub_url, jwt_secret, user, workspace), follow_redirects=False)
    assert answer.status_code == 303, answer.text
    return csrf_of(client.get(f"{hub_url}/", follow_redirects=False))


def browser(
    hub_url: str, jwt_secret: str, user: str = "user-1", workspace: str = "ws-1", **client_options: Any
) -> httpx.Client:
    """A client signed in to the hub at `hub_url` as `user` of `workspace` (see the module's docstring)."""
    hooks = client_options.pop("event_hooks", {})
    client = httpx.Client(timeout=client_options.pop("timeout", 30), **client_options)
    csrf = sign_in(client, hub_url, jwt_secret, user, workspace)
    api_token = issue_token(jwt_secret, user, workspace, 3600)
    hub = httpx.URL(hub_url)

    def as_the_page(request: httpx.Request) -> None:
        if (request.url.host, request.url.port) != (hub.host, hub.port):
            return
        request.headers["Origin"] = hub_url
        request.headers["X-CSRF-Token"] = csrf
        if request.url.path.startswith("/api/"):
            request.headers.setdefault("Authorization", f"Bearer {api_token}")

    client.event_hooks = {"request": [as_the_page, *hooks.get("request", [])], "response": hooks.get("response", [])}
    return client


def start_connect(client: httpx.Client, hub_url: str, provider: str = "google", **params: str) -> httpx.Response:
    """Open the hub's connect page and submit its form, as the user clicking "Continue" would; the answer is the
    redirect to the provider's consent page (or the refusal)."""
    page = client.get(f"{hub_url}/connect/{provider}", params=params, follow_redirects=False)
    if page.status_code != 200:
        return page
    fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', page.text))
    origin = {"Origin": hub_url}  # what a browser sends with a form's POST
    return client.post(f"{hub_url}/connect/{provider}", data=fields, headers=origin, follow_redirects=False)
