"""The fake Graph API read and written by the facebook-business SDK and plain requests: versions, appsecret_proof,
Pages, subscribed apps, lead forms, leads (paging, filtering, 90 days), injected errors, faults and usage headers."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from facebook_business.adobjects.lead import Lead
from facebook_business.adobjects.leadgenform import LeadgenForm
from facebook_business.adobjects.page import Page
from facebook_business.exceptions import FacebookRequestError

from sandbox.facebook.errors import THROTTLES
from tests.conftest import wait_for
from tests.sandbox.facebook import APP_ID, APP_SECRET, Facebook, error_of, running_receiver, sdk_api

LEAD_FIELDS = ["id", "created_time", "field_data", "ad_id", "form_id", "campaign_id", "is_organic", "platform"]
DAY = 86400


def first_form(facebook: Facebook, page_index: int = 0) -> tuple[str, str]:
    page = facebook.dana()["pages"][page_index]
    return page["id"], page["forms"][0]["id"]


def test_graph_paths_answer_with_or_without_a_version_prefix(facebook: Facebook) -> None:
    token = facebook.token()["access_token"]

    answers = [facebook.graph.call("GET", "/me", token, version=v) for v in ("v25.0", "v26.0", None)]

    assert [r.json()["name"] for r in answers] == ["Dana Demo"] * 3
    assert [r.headers["facebook-api-version"] for r in answers] == ["v25.0", "v26.0", "v25.0"]
    assert all(r.headers["x-fb-trace-id"] for r in answers)
    log = facebook.sandbox.request_log()
    assert [e["path"] for e in log] == ["/me"] * 3, "the log names Graph paths without their version"
    assert all(e["app"] == APP_ID and e["account"] == facebook.dana()["id"] for e in log)
    assert "REDACTED" in log[0]["query"] and token not in str(log)


def test_appsecret_proof_is_required_and_checked(facebook: Facebook) -> None:
    token = facebook.token()["access_token"]

    missing = error_of(facebook.graph.call("GET", "/me", token, with_proof=False))
    wrong = error_of(facebook.graph.call("GET", "/me", token, appsecret_proof="00" * 32, with_proof=False))
    facebook.admin.register_app(APP_ID, APP_SECRET, [], proof=False)
    relaxed = facebook.graph.call("GET", "/me", token, with_proof=False)

    assert (missing["code"], missing["message"]) == (
        100,
        "API calls from the server require an appsecret_proof argument",
    )
    assert (wrong["code"], wrong["message"]) == (100, "Invalid appsecret_proof provided in the API argument")
    assert relaxed.status_code == 200


def test_an_unknown_token_or_object_gets_graph_errors(facebook: Facebook) -> None:
    token = facebook.token()["access_token"]

    garbage = error_of(facebook.graph.get("/me", "EAAgarbage"))
    unknown = error_of(facebook.graph.get("/999999999", token))

    assert (garbage["code"], garbage.get("error_subcode"), garbage["type"]) == (190, None, "OAuthException")
    assert (unknown["code"], unknown["error_subcode"], unknown["type"]) == (100, 33, "GraphMethodException")


def test_me_accounts_pages_through_the_granted_pages_with_cursors(facebook: Facebook) -> None:
    token = facebook.token()["access_token"]

    first = facebook.graph.ok("GET", "/me/accounts", token, limit=1)
    second = facebook.graph.ok("GET", "/me/accounts", token, limit=1, after=first["paging"]["cursors"]["after"])
    back = facebook.graph.ok("GET", "/me/accounts", token, limit=1, before=second["paging"]["cursors"]["before"])

    ids = [page["id"] for page in facebook.dana()["pages"]]
    assert [first["data"][0]["id"], second["data"][0]["id"]] == ids
    assert first["paging"]["next"].startswith(facebook.url + "/v25.0/me/accounts?") and "next" not in second["paging"]
    assert "previous" in second["paging"] and back["data"] == first["data"]


def test_subscribed_apps_are_added_listed_and_removed_with_a_page_token(facebook: Facebook) -> None:
    tokens = facebook.token()
    page_id, page_token = next(iter(tokens["page_tokens"].items()))
    path = f"/{page_id}/subscribed_apps"

    added = facebook.graph.ok("POST", path, page_token, subscribed_fields="leadgen")
    listed = facebook.graph.ok("GET", path, page_token)["data"]
    removed = facebook.graph.ok("DELETE", path, page_token)
    after = facebook.graph.ok("GET", path, page_token)["data"]
    with_user_token = error_of(facebook.graph.call("POST", path, tokens["access_token"], subscribed_fields="leadgen"))

    assert added == removed == {"success": True}
    assert [(a["id"], a["name"], a["subscribed_fields"]) for a in listed] == [(APP_ID, "Synchub Test", ["leadgen"])]
    assert after == []
    assert with_user_token["code"] == 210
    assert [(e["method"], e["path"]) for e in facebook.sandbox.request_log()][2] == ("DELETE", path)


def test_subscribing_without_pages_manage_metadata_is_a_200_permission_error(facebook: Facebook) -> None:
    tokens = facebook.token(["pages_show_list", "leads_retrieval"])
    page_id, page_token = next(iter(tokens["page_tokens"].items()))

    error = error_of(
        facebook.graph.call("POST", f"/{page_id}/subscribed_apps", page_token, subscribed_fields="leadgen")
    )

    assert error["code"] == 200 and "pages_manage_metadata" in error["message"]


def test_the_sdk_lists_a_pages_lead_forms_and_reads_every_lead_of_a_form_newest_first(facebook: Facebook) -> None:
    tokens = facebook.token()
    page_id, form_id = first_form(facebook)
    api = sdk_api(facebook.url, tokens["page_tokens"][page_id])

    forms = list(Page(page_id, api=api).get_lead_gen_forms(fields=["id", "name", "status", "leads_count"]))
    leads = list(LeadgenForm(form_id, api=api).get_leads(fields=LEAD_FIELDS, params={"limit": 2}))

    assert [(f["name"], f["status"], f["leads_count"]) for f in forms] == [
        ("Contact us", "ACTIVE", 5),
        ("Book a tasting", "ACTIVE", 5),
    ]
    assert len(leads) == 5 and len({lead["id"] for lead in leads}) == 5
    times = [lead["created_time"] for lead in leads]
    assert times == sorted(times, reverse=True) and times[0].endswith("+0000")
    assert sum(1 for e in facebook.sandbox.request_log() if e["path"] == f"/{form_id}/leads") == 3


def test_a_lead_added_between_pages_does_not_shift_the_next_page(facebook: Facebook) -> None:
    tokens = facebook.token()
    page_id, form_id = first_form(facebook)
    page_token = tokens["page_tokens"][page_id]

    first = facebook.graph.ok("GET", f"/{form_id}/leads", page_token, limit=2)
    facebook.admin.add_leads(form_id, webhook=False)
    rest = facebook.graph.ok(
        "GET", f"/{form_id}/leads", page_token, limit=10, after=first["paging"]["cursors"]["after"]
    )

    assert len(first["data"]) + len(rest["data"]) == 5
    assert not {lead["id"] for lead in first["data"]} & {lead["id"] for lead in rest["data"]}


@pytest.mark.parametrize(
    ("operator", "expected"),
    [("GREATER_THAN", 2), ("GREATER_THAN_OR_EQUAL", 3), ("LESS_THAN", 1), ("LESS_THAN_OR_EQUAL", 2), ("EQUAL", 1)],
)
def test_leads_filter_on_time_created(facebook: Facebook, operator: str, expected: int) -> None:
    tokens = facebook.token()
    page_id, form_id = first_form(facebook)
    now = int(time.time())
    created = [now - 300, now - 200, now - 100, now]
    for moment in created:
        facebook.admin.add_leads(form_id, created_time=moment, webhook=False)
    rule = [{"field": "time_created", "operator": operator, "value": now - 200}]
    bounds = [{"field": "time_created", "operator": "GREATER_THAN", "value": now - 301}]

    leads = facebook.graph.ok(
        "GET", f"/{form_id}/leads", tokens["page_tokens"][page_id], filtering=json.dumps(rule + bounds)
    )

    assert len(leads["data"]) == expected


def test_leads_past_90_days_are_no_longer_returned(facebook: Facebook) -> None:
    tokens = facebook.token()
    page_id, form_id = first_form(facebook)
    old = facebook.admin.add_leads(form_id, created_time=time.time() - 91 * DAY, webhook=False)["leads"][0]
    recent = facebook.admin.add_leads(form_id, created_time=time.time() - 89 * DAY, webhook=False)["leads"][0]
    page_token = tokens["page_tokens"][page_id]

    listed = {lead["id"] for lead in facebook.graph.ok("GET", f"/{form_id}/leads", page_token, limit=100)["data"]}
    gone = error_of(facebook.graph.get(f"/{old}", page_token))

    assert recent in listed and old not in listed
    assert (gone["code"], gone["error_subcode"]) == (100, 33)


def test_a_lead_is_read_with_its_fields_and_its_messy_answers(facebook: Facebook) -> None:
    tokens = facebook.token()
    leads: list[dict[str, Any]] = []
    for page_id, page_token in tokens["page_tokens"].items():
        api = sdk_api(facebook.url, page_token)
        for form_id in (
            form["id"] for page in facebook.dana()["pages"] if page["id"] == page_id for form in page["forms"]
        ):
            leads += [
                Lead(lead["id"], api=api).api_get(fields=LEAD_FIELDS)
                for lead in LeadgenForm(form_id, api=api).get_leads()
            ]

    answers = [(item["name"], item["values"]) for lead in leads for item in lead["field_data"]]
    values = [v for _, vs in answers for v in vs]
    assert len(leads) == 20
    assert all(
        set(lead.export_all_data()) >= {"id", "created_time", "field_data", "form_id", "is_organic", "platform"}
        for lead in leads
    )
    assert {lead["is_organic"] for lead in leads} == {True, False} and {lead["platform"] for lead in leads} == {
        "fb",
        "ig",
    }
    assert all(("ad_id" in lead) != lead["is_organic"] for lead in leads)
    assert any(len(vs) == 2 for name, vs in answers if name in ("what_are_you_interested_in?", "company_size"))
    assert "" in values, "an empty answer"
    assert "0612345678" in values, "a phone without a country code"
    assert any(not v.isascii() for v in values), "unicode"


def test_several_leads_are_read_in_one_request_keyed_by_id_and_one_unknown_id_refuses_them_all(
    facebook: Facebook,
) -> None:
    page_id, form_id = first_form(facebook)
    token = facebook.token()["page_tokens"][page_id]
    ids = [lead["id"] for lead in LeadgenForm(form_id, api=sdk_api(facebook.url, token)).get_leads()][:3]
    fields = ",".join(LEAD_FIELDS)

    found = facebook.graph.ok("GET", "/", token, ids=",".join(ids), fields=fields)
    missing = error_of(facebook.graph.get("/", token, ids=",".join([*ids, "999"]), fields=fields))
    too_many = error_of(facebook.graph.get("/", token, ids=",".join(str(10**9 + n) for n in range(51))))
    unproved = error_of(facebook.graph.get("/", token, ids=ids[0], with_proof=False))

    assert list(found) == ids and all(found[i]["id"] == i and found[i]["form_id"] == form_id for i in ids)
    assert found[ids[0]]["field_data"], found
    assert (missing["code"], missing["message"]) == (100, "(#100) Some of the aliases you requested do not exist: 999")
    assert too_many["code"] == 100 and "Maximum: 50" in too_many["message"]
    assert unproved["code"] == 100 and "appsecret_proof" in unproved["message"]


def test_leads_need_leads_retrieval(facebook: Facebook) -> None:
    tokens = facebook.token(["pages_show_list", "pages_manage_metadata"], declined=["leads_retrieval"])
    page_id, form_id = first_form(facebook)

    error = error_of(facebook.graph.get(f"/{form_id}/leads", tokens["page_tokens"][page_id]))

    assert error["code"] == 10 and "leads_retrieval" in error["message"]


def test_an_injected_throttle_answers_the_next_calls_with_usage_headers_then_stops(facebook: Facebook) -> None:
    tokens = facebook.token()
    page_id, form_id = first_form(facebook)
    facebook.admin.inject_error(17, page_id=page_id, times=2, estimated_time_to_regain_access=3)
    api = sdk_api(facebook.url, tokens["page_tokens"][page_id])
    other_page, other_form = first_form(facebook, 1)

    failures = []
    for _ in range(2):
        with pytest.raises(FacebookRequestError) as failed:
            LeadgenForm(form_id, api=api).get_leads()
        failures.append(failed.value)
    other = facebook.graph.get(f"/{other_form}/leads", tokens["page_tokens"][other_page])
    then = list(LeadgenForm(form_id, api=api).get_leads())

    assert [(f.http_status(), f.api_error_code(), f.api_transient_error()) for f in failures] == [(400, 17, True)] * 2
    headers = failures[0].http_headers()
    assert json.loads(headers["x-app-usage"])["call_count"] == 100
    assert json.loads(headers["x-business-use-case-usage"])[page_id][0]["estimated_time_to_regain_access"] == 3
    assert other.status_code == 200 and len(then) == 5


def test_every_throttle_code_and_token_subcode_has_graphs_shape(facebook: Facebook) -> None:
    token = facebook.token()["access_token"]
    codes = [*THROTTLES, 10, 200]
    for code in codes:
        facebook.admin.inject_error(code, path_prefix="/me")
    for subcode in (458, 460, 463, 467):
        facebook.admin.inject_error(190, error_subcode=subcode, path_prefix="/me")

    errors = [error_of(facebook.graph.get("/me", token)) for _ in range(len(codes) + 4)]

    assert [e["code"] for e in errors] == [*codes, 190, 190, 190, 190]
    assert [e.get("error_subcode") for e in errors[-4:]] == [458, 460, 463, 467]
    assert all(e["message"].startswith(f"(#{e['code']})") for e in errors[: len(codes)])
    assert facebook.graph.get("/me", token).status_code == 200


def test_a_sandbox_fault_on_a_graph_path_answers_a_graph_error_and_names_the_caller(facebook: Facebook) -> None:
    token = facebook.token()["access_token"]
    facebook.sandbox.set_faults([{"path_prefix": "/me", "status": 503, "times": 1}])

    faulted = facebook.graph.get("/me", token)
    then = facebook.graph.get("/me", token)

    assert faulted.status_code == 503 and faulted.json()["error"]["code"] == 2
    assert faulted.json()["error"]["is_transient"] is True and then.status_code == 200
    entry = facebook.sandbox.request_log()[0]
    assert (entry["fault"], entry["path"], entry["app"], entry["account"]) == (
        True,
        "/me",
        APP_ID,
        facebook.dana()["id"],
    )


def test_usage_headers_come_with_successful_calls_when_set(facebook: Facebook) -> None:
    tokens = facebook.token()
    page_id, form_id = first_form(facebook)
    facebook.admin.settings(
        app_usage={"call_count": 28, "total_time": 25, "total_cputime": 25},
        page_usage={"call_count": 97, "total_time": 23, "total_cputime": 23, "estimated_time_to_regain_access": 0},
    )

    user_call = facebook.graph.get("/me", tokens["access_token"])
    page_call = facebook.graph.get(f"/{form_id}/leads", tokens["page_tokens"][page_id])

    assert json.loads(user_call.headers["x-app-usage"]) == {"call_count": 28, "total_time": 25, "total_cputime": 25}
    assert json.loads(page_call.headers["x-business-use-case-usage"])[page_id][0]["call_count"] == 97


def test_the_app_subscription_is_saved_only_after_the_callback_echoes_the_challenge(facebook: Facebook) -> None:
    app_token = f"{APP_ID}|{APP_SECRET}"
    with running_receiver() as receiver:
        params = {"object": "page", "callback_url": receiver.url, "fields": "leadgen", "include_values": "true"}
        refused = error_of(
            facebook.graph.call("POST", f"/{APP_ID}/subscriptions", app_token, verify_token="wrong", **params)
        )
        saved = facebook.graph.ok(
            "POST", f"/{APP_ID}/subscriptions", app_token, verify_token=receiver.verify_token, **params
        )
        listed = facebook.graph.ok("GET", f"/{APP_ID}/subscriptions", app_token)["data"]
        user_token = error_of(facebook.graph.get(f"/{APP_ID}/subscriptions", facebook.token()["access_token"]))

    handshakes = [r.query for r in receiver.received if r.method == "GET"]
    assert refused["code"] == 2200 and saved == {"success": True}
    assert [(h["hub.mode"], h["hub.verify_token"]) for h in handshakes] == [
        ("subscribe", "wrong"),
        ("subscribe", receiver.verify_token),
    ]
    assert all(h["hub.challenge"].isdigit() for h in handshakes)
    assert listed == [
        {
            "object": "page",
            "callback_url": receiver.url,
            "active": True,
            "fields": [{"name": "leadgen", "version": "v25.0"}],
        }
    ]
    assert user_token["code"] == 15


def test_an_error_injected_for_another_app_or_path_leaves_other_calls_alone(facebook: Facebook) -> None:
    token = facebook.token()["access_token"]
    facebook.admin.inject_error(4, app_id="999", times=None)
    facebook.admin.inject_error(32, path_prefix="/me/accounts", times=None)
    facebook.admin.inject_error(613, app_id=APP_ID, method="DELETE", times=None)

    me = facebook.graph.get("/me", token)
    accounts = [error_of(facebook.graph.get("/me/accounts", token))["code"] for _ in range(2)]
    revoke = error_of(facebook.graph.call("DELETE", "/me/permissions", token))

    assert me.status_code == 200 and accounts == [32, 32] and revoke["code"] == 613
    assert len(facebook.admin.grants()) == 1


def test_an_error_injected_for_some_seconds_stops_by_itself(facebook: Facebook) -> None:
    tokens = facebook.token()
    page_id, form_id = first_form(facebook)
    facebook.admin.inject_error(80005, page_id=page_id, times=None, seconds=0.3, estimated_time_to_regain_access=1)
    page_token = tokens["page_tokens"][page_id]

    during = error_of(facebook.graph.get(f"/{form_id}/leads", page_token))
    after = wait_for(
        lambda: (answer := facebook.graph.get(f"/{form_id}/leads", page_token)).status_code == 200 and answer,
        timeout=5,
        interval=0.05,
        what="the injected error to lift",
    )

    assert during["code"] == 80005 and after.status_code == 200
