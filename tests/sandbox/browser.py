"""A plain httpx client acting as the user's browser on Google's chooser and consent pages."""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser
from urllib.parse import parse_qs, urlsplit

import httpx


@dataclass
class Form:
    action: str
    hidden: dict[str, str] = field(default_factory=dict)
    checkboxes: list[str] = field(default_factory=list)
    buttons: list[tuple[str, str]] = field(default_factory=list)


class FormParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[Form] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        if tag == "form":
            self.forms.append(Form(values["action"]))
        elif tag == "input" and values.get("type") == "hidden":
            self.forms[-1].hidden[values["name"]] = values["value"]
        elif tag == "input" and values.get("type") == "checkbox":
            self.forms[-1].checkboxes.append(values["value"])
        elif tag == "button" and "name" in values:
            self.forms[-1].buttons.append((values["name"], values["value"]))


def forms(page: httpx.Response) -> list[Form]:
    parser = FormParser()
    parser.feed(page.text)
    return parser.forms


def callback_params(response: httpx.Response) -> dict[str, str]:
    assert response.status_code == 302, response.text
    return {k: v[0] for k, v in parse_qs(urlsplit(response.headers["location"]).query).items()}


def choose_account(browser: httpx.Client, chooser: httpx.Response, email: str) -> httpx.Response:
    form = next(f for f in forms(chooser) if f.hidden.get("account") == email)
    return browser.post(form.action, data=form.hidden)


def answer_consent(
    browser: httpx.Client, consent: httpx.Response, action: str = "allow", tick: list[str] | None = None
) -> httpx.Response:
    """Submit the consent form; `tick` names the checkboxes to tick (all of them when None)."""
    form = forms(consent)[0]
    ticked = form.checkboxes if tick is None else tick
    return browser.post(form.action, data={**form.hidden, "scope": ticked, "action": action})


def authorize(
    browser: httpx.Client,
    url: str,
    account: str = "ada@sandbox.test",
    tick: list[str] | None = None,
    action: str = "allow",
) -> httpx.Response:
    """Follow the browser flow from the authorization URL to Google's final redirect to the app."""
    page = browser.get(url)
    if page.status_code == 200 and forms(page)[0].action.endswith("/auth/account"):
        page = choose_account(browser, page, account)
    if page.status_code == 200:
        page = answer_consent(browser, page, action, tick)
    return page
