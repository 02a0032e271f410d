"""Calendar's error shapes, scopes and quotas (403 rateLimitExceeded / quotaExceeded in the usageLimits domain, 429)
through google-api-python-client, injected with the sandbox's fault rules and quotas; and granular and incremental
consent for the calendar scopes on the consent screen."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from authlib.integrations.httpx_client import OAuth2Client
from googleapiclient.discovery import Resource
from googleapiclient.errors import HttpError

from sandbox.admin_client import SandboxAdmin
from sandbox.google.calendar.admin_client import calendar_fault
from tests.sandbox.browser import answer_consent, callback_params, forms
from tests.sandbox.conftest import (
    ADA,
    CALENDAR_EVENTS,
    CALENDAR_LIST,
    CLIENT_ID,
    CONTACTS,
    EMAIL,
    Sandbox,
)
from tests.sandbox.test_oauth import begin


def refusal(request: Any) -> tuple[int, dict[str, Any]]:
    with pytest.raises(HttpError) as caught:
        request.execute(num_retries=0)
    return caught.value.resp.status, json.loads(caught.value.content)["error"]


def first_error(request: Any) -> tuple[int, str, str]:
    status, error = refusal(request)
    return status, error["errors"][0]["domain"], error["errors"][0]["reason"]


def test_injected_faults_answer_in_calendars_shape(admin: SandboxAdmin, ada_calendar: Resource) -> None:
    lists = ada_calendar.calendarList()
    admin.set_faults(
        [
            calendar_fault("quotaExceeded", 403),
            calendar_fault("userRateLimitExceeded", 403),
            {"path_prefix": "/calendar/v3/", "status": 429, "times": 1},
            {"path_prefix": "/calendar/v3/", "status": 403, "times": 1},
            {"path_prefix": "/calendar/v3/", "status": 503, "times": 1},
        ]
    )
    seen = [first_error(lists.list()) for _ in range(5)]
    admin.set_faults([calendar_fault("quotaExceeded")])
    quota = refusal(ada_calendar.events().list(calendarId="primary"))

    assert seen == [
        (403, "usageLimits", "quotaExceeded"),
        (403, "usageLimits", "userRateLimitExceeded"),
        (429, "usageLimits", "rateLimitExceeded"),
        (403, "usageLimits", "rateLimitExceeded"),
        (503, "global", "backendError"),
    ]
    assert quota == (403, {"errors": [{"domain": "usageLimits", "reason": "quotaExceeded",
                                       "message": "Calendar usage limits exceeded."}],
                           "code": 403, "message": "Calendar usage limits exceeded."})  # fmt: skip
    assert lists.list().execute(num_retries=0)["items"]  # the rules are used up


def test_quotas_refuse_with_rate_limit_exceeded_per_user_and_quota_exceeded_per_app(
    admin: SandboxAdmin, ada_calendar: Resource
) -> None:
    lists = ada_calendar.calendarList()
    admin.set_quota(per_user=2, path_prefix="/calendar/v3/")
    lists.list().execute(num_retries=0)
    lists.list().execute(num_retries=0)
    as_403 = first_error(lists.list())
    admin.calendar.settings(calendar_rate_limit_status=429)
    as_429 = first_error(lists.list())
    admin.set_quota(per_app=0, path_prefix="/calendar/v3/")
    per_app = first_error(ada_calendar.events().list(calendarId="primary"))

    assert as_403 == (403, "usageLimits", "rateLimitExceeded")
    assert as_429 == (429, "usageLimits", "rateLimitExceeded")
    assert per_app == (403, "usageLimits", "quotaExceeded")


def test_scopes_are_checked_per_method_and_a_bad_token_is_401(
    admin: SandboxAdmin, calendar: Callable[[str], Resource]
) -> None:
    list_only = calendar(admin.mint_tokens(ADA, CLIENT_ID, [CALENDAR_LIST])["access_token"])
    contacts_only = calendar(admin.mint_tokens(ADA, CLIENT_ID, [CONTACTS])["access_token"])

    entries = list_only.calendarList().list().execute(num_retries=0)["items"]
    status, error = refusal(list_only.events().list(calendarId="primary"))
    no_list = first_error(contacts_only.calendarList().list())
    bad_status, bad = refusal(calendar("ya29.not-a-token").calendarList().list())

    assert len(entries) == 3
    assert status == 403 and error["status"] == "PERMISSION_DENIED"
    assert error["errors"] == [
        {"domain": "global", "reason": "insufficientPermissions", "message": "Insufficient Permission"}
    ]
    assert error["details"][0]["reason"] == "ACCESS_TOKEN_SCOPE_INSUFFICIENT"
    assert error["details"][0]["metadata"]["method"] == "calendar.v3.Events.List"
    assert no_list == (403, "global", "insufficientPermissions")
    assert bad_status == 401 and bad["status"] == "UNAUTHENTICATED" and bad["errors"][0]["reason"] == "authError"


def consent_page(
    sandbox: Sandbox, browser: httpx.Client, oauth: Callable[..., OAuth2Client], scope: str, **params: str
) -> tuple[OAuth2Client, httpx.Response, str, str]:
    client = oauth(scope=scope)
    url, state, verifier = begin(sandbox, client, login_hint=ADA, prompt="consent", **params)
    return client, browser.get(url), state, verifier


def granted(sandbox: Sandbox, client: OAuth2Client, final: httpx.Response, state: str, verifier: str) -> list[str]:
    token = client.fetch_token(
        sandbox.token_url, authorization_response=final.headers["location"], state=state, code_verifier=verifier
    )
    scopes: list[str] = token["scope"].split()
    return scopes


def test_calendar_scopes_are_checkboxes_a_user_can_untick(
    sandbox: Sandbox, browser: httpx.Client, oauth: Callable[..., OAuth2Client], people: Callable[[str], Any]
) -> None:
    client, page, state, verifier = consent_page(
        sandbox, browser, oauth, f"openid email {CONTACTS} {CALENDAR_LIST} {CALENDAR_EVENTS}"
    )
    final = answer_consent(browser, page, tick=[CONTACTS])
    scopes = granted(sandbox, client, final, state, verifier)

    assert forms(page)[0].checkboxes == [CONTACTS, CALENDAR_LIST, CALENDAR_EVENTS]
    assert "See the list of Google calendars you&#x27;re subscribed to" in page.text
    assert scopes == ["openid", EMAIL, CONTACTS]
    contacts = people(client.token["access_token"]).list(resourceName="people/me", personFields="names", pageSize=1)
    assert contacts.execute(num_retries=0)["connections"]
    assert sandbox.admin.request_log() and not [
        e for e in sandbox.admin.request_log() if e["path"].startswith("/calendar/")
    ]


def test_incremental_consent_asks_only_for_calendar_and_keeps_contacts(
    sandbox: Sandbox, browser: httpx.Client, oauth: Callable[..., OAuth2Client], calendar: Callable[[str], Resource]
) -> None:
    first, page, state, verifier = consent_page(sandbox, browser, oauth, f"openid email {CONTACTS}")
    assert forms(page)[0].checkboxes == []
    assert granted(sandbox, first, answer_consent(browser, page), state, verifier) == ["openid", EMAIL, CONTACTS]

    scope = f"openid email {CONTACTS} {CALENDAR_LIST} {CALENDAR_EVENTS}"
    second, page, state, verifier = consent_page(sandbox, browser, oauth, scope, include_granted_scopes="true")
    final = answer_consent(browser, page, tick=[CALENDAR_LIST])
    scopes = granted(sandbox, second, final, state, verifier)
    third, again, state, verifier = consent_page(sandbox, browser, oauth, scope, include_granted_scopes="true")
    final = answer_consent(browser, again)
    everything = granted(sandbox, third, final, state, verifier)

    assert forms(page)[0].checkboxes == [CALENDAR_LIST, CALENDAR_EVENTS]
    assert "already given" in page.text and "See and download your contacts" in page.text
    assert scopes == ["openid", EMAIL, CONTACTS, CALENDAR_LIST]
    assert forms(again)[0].checkboxes == []  # one scope left to ask: Continue or Cancel
    assert everything == ["openid", EMAIL, CONTACTS, CALENDAR_LIST, CALENDAR_EVENTS]
    events = calendar(third.token["access_token"]).events().list(calendarId="primary").execute(num_retries=0)
    assert events["items"] and callback_params(final)["scope"].split() == everything
