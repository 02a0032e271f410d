"""Facebook Lead Ads keeps the connector contract."""

from __future__ import annotations

import secrets
import time
import uuid
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from connectors.base import Resource, StreamContext
from connectors.facebook_leads.errors import InvalidParameter
from connectors.facebook_leads.spec import SPEC
from connectors.facebook_leads.stream import page_token, process
from core.errors import AuthRevoked, CursorExpired, RateLimited
from oauth.client import OAuthClient, new_code_verifier
from oauth.providers import PROVIDERS
from sandbox.admin_client import SandboxAdmin
from tests.contract import Answer, ConnectorContract, Grant, GrantCredentials
from tests.facebook.conftest import forms

BUC_USAGE = (
    '{"153125381133":[{"type":"pages","call_count":97,"total_cputime":23,"total_time":23,'
    '"estimated_time_to_regain_access":0}]}'
)


class FacebookSandbox:
    """The sandbox's Facebook as the contract drives it: an account is a user with one Page and one form."""

    def __init__(self, url: str, admin: SandboxAdmin) -> None:
        self.url, self.admin = url, admin
        self.app_id, self.app_secret = str(secrets.randbelow(10**15) + 10**15), secrets.token_urlsafe(24)
        self.redirect = "http://127.0.0.1:9/oauth/facebook/callback"
        body = {"app_id": self.app_id, "app_secret": self.app_secret, "redirect_uris": [self.redirect]}
        admin.call("POST", "/facebook/apps", json=body)
        self.pages: dict[str, dict[str, str]] = {}

    def seed(self, capability: str, records: int) -> str:
        user = self.admin.call("POST", "/facebook/users", json={"name": f"Cora {uuid.uuid4().hex[:6]}"})
        page = self.admin.call("POST", f"/facebook/users/{user['id']}/pages", json={"name": "Contract Page"})
        form = self.admin.call("POST", f"/facebook/pages/{page['id']}/forms", json={"name": "Contract form"})
        self.pages[user["id"]] = {"page": page["id"], "name": page["name"], "form": form["id"]}
        if records:
            self.admin.call("POST", f"/facebook/forms/{form['id']}/leads", json={"count": records, "webhook": False})
        return str(user["id"])

    def add(self, capability: str, account: str) -> str:
        form = self.pages[account]["form"]
        created = self.admin.call("POST", f"/facebook/forms/{form}/leads", json={"count": 1, "webhook": False})
        return str(created["leads"][0])

    def delete(self, capability: str, account: str, external_id: str) -> None:
        raise AssertionError("Meta never reports a lead deleted")

    def expire_cursor(self, capability: str, account: str) -> None:
        raise AssertionError("the connector's cursors are its own time marks")

    def grant(self, account: str, scopes: Any) -> Grant:
        config = PROVIDERS["facebook"].at(self.url)
        client = OAuthClient(config, self.app_id, self.app_secret, self.redirect)
        state, verifier = secrets.token_urlsafe(16), new_code_verifier()
        with httpx.Client(base_url=self.url, timeout=30) as browser:
            chooser = browser.get(client.authorization_url(list(scopes), state, verifier))
            who = next(f for f in forms(chooser) if f.hidden().get("user") == account)
            consent = browser.post(who.action, data=who.hidden())
            form = forms(consent)[0]
            data = {
                **form.hidden(),
                "permission": form.boxes("permission"),
                "page": form.boxes("page"),
                "action": "allow",
            }
            back = browser.post(form.action, data=data)
        assert back.status_code == 302, back.text
        tokens = client.exchange(back.headers["location"], state, verifier)
        credentials = GrantCredentials(client, tokens)
        page = self.pages[account]
        resource = Resource(page["page"], page["name"])
        context = StreamContext(
            account, credentials, self.url, resource=resource, app_id=self.app_id, app_secret=self.app_secret
        )
        page_token(context, resource)  # sealed as the Page is chosen in the hub
        return Grant(tokens.scopes, credentials, resource, self.app_id, self.app_secret)


class TestFacebookLeadsContract(ConnectorContract):
    spec = SPEC
    settings_env = {
        "SYNCHUB_FACEBOOK_LEADS__PAGE_SIZE": "2",
        "SYNCHUB_FACEBOOK_LEADS__PHONE_REGION": "gb",
        "SYNCHUB_FACEBOOK_LEADS__VERIFY_TOKEN": "contract-verify-token-0123",
    }
    invalid_settings_env = {
        "SYNCHUB_FACEBOOK_LEADS__PAGE_SIZE": "0",
        "SYNCHUB_FACEBOOK_LEADS__PHONE_REGION": "XX",
        "SYNCHUB_FACEBOOK_LEADS__VERIFY_TOKEN": "short",
    }
    reports_deletions = False
    test_an_expired_cursor_raises_cursor_expired = None  # its cursors are its own time marks: they never expire
    # Bodies as providers.md 4.8-4.10 quote them; the throttle with the usage header 4.9 quotes.
    answers = {
        "rate_limit__pages_business_use_case": Answer(400, RateLimited, {"X-Business-Use-Case-Usage": BUC_USAGE}),
        "auth_error__session_expired": Answer(400, AuthRevoked),
        "auth_error__password_changed": Answer(400, AuthRevoked),
        "unknown_object__unsupported_get": Answer(400, InvalidParameter),  # a PayloadRejected: never retried
        "app_secret_proof__missing": Answer(400, InvalidParameter),
    }

    @pytest.fixture(scope="class")
    @classmethod
    def provider(cls, sandbox_url: str, admin: SandboxAdmin) -> FacebookSandbox:
        return FacebookSandbox(sandbox_url, admin)


def test_leads_are_read_from_the_newest_seen_less_the_overlap(sandbox_url: str, admin: SandboxAdmin) -> None:
    """A lead created within the overlap before the newest one seen, yet after the poll read, is still found."""
    provider = FacebookSandbox(sandbox_url, admin)
    account = provider.seed("leads", 1)
    grant = provider.grant(account, ["leads_retrieval", "pages_show_list", "pages_read_engagement"])
    contract = TestFacebookLeadsContract()
    stream = SPEC.capabilities[0].stream(contract.context(account, grant, sandbox_url))
    first = list(stream.read(None))
    form = provider.pages[account]["form"]
    late = admin.call(
        "POST", f"/facebook/forms/{form}/leads", json={"count": 1, "webhook": False, "created_time": time.time() - 300}
    )["leads"][0]
    again = list(stream.read(first[-1].checkpoint))
    assert [lead.external_id for page in again for lead in page.records] == [late]


def test_a_webhook_delivery_is_processed_into_its_lead_with_the_page_token(
    sandbox_url: str, admin: SandboxAdmin
) -> None:
    provider = FacebookSandbox(sandbox_url, admin)
    account = provider.seed("leads", 0)
    grant = provider.grant(account, ["leads_retrieval", "pages_show_list", "pages_read_engagement"])
    form = provider.pages[account]["form"]
    answers = [{"name": "full_name", "values": ["Ida Lead"]}, {"name": "budget", "values": ["Big"]}]
    body = {"count": 1, "webhook": False, "field_data": answers}
    (lead_id,) = admin.call("POST", f"/facebook/forms/{form}/leads", json=body)["leads"]
    context = TestFacebookLeadsContract().context(account, grant, sandbox_url)
    mark = admin.request_log()[-1]["id"]

    page = process(
        SimpleNamespace(payload={"leadgen_id": int(lead_id), "page_id": grant.resource.external_id}), context
    )

    (lead,) = page.records
    assert (lead.external_id, lead.full_name, lead.form_id) == (lead_id, "Ida Lead", form)
    assert [(a.key, a.values) for a in lead.answers] == [("budget", ("Big",))]
    assert page.checkpoint == {} and not page.last
    assert all("appsecret_proof=" in entry["query"] for entry in admin.request_log(mark))


def test_a_stored_paging_cursor_facebook_refuses_asks_for_a_full_pass(sandbox_url: str, admin: SandboxAdmin) -> None:
    provider = FacebookSandbox(sandbox_url, admin)
    account = provider.seed("leads", 5)
    grant = provider.grant(account, ["leads_retrieval", "pages_show_list", "pages_read_engagement"])
    read = SPEC.capabilities[0].stream(TestFacebookLeadsContract().context(account, grant, sandbox_url)).read
    first = next(page for page in read(None) if page.records)  # after the page that only keeps the pass's forms
    assert first.checkpoint["pass"]["after"]
    stale = {**first.checkpoint, "pass": {**first.checkpoint["pass"], "after": "no-longer-valid"}}

    with pytest.raises(CursorExpired):
        next(read(stale))
    assert [lead.external_id for lead in next(read(first.checkpoint)).records]
