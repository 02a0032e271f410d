"""Leads arriving through the backfill and the poll: throttling pauses the run and nothing is missed or doubled,
a token Facebook refuses stops every call, and a Page chosen in two workspaces feeds both, once each."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, select

from crm.models import LeadRow
from tests.conftest import wait_for
from tests.facebook.conftest import PAGE_SIZE, FacebookHub


def sync_now(hub: FacebookHub, browser: Any, connection_id: uuid.UUID) -> dict[str, Any]:
    answer = browser.post(f"{hub.url}/api/v1/connections/{connection_id}/sync")
    assert answer.status_code == 200, answer.text
    runs = [run for run in answer.json()["runs"].values() if run]
    assert len(runs) == 1, answer.json()
    return hub.wait_run(runs[0])


def test_throttling_mid_backfill_pauses_then_completes_without_a_lead_missed_or_doubled(
    facebook_hub: FacebookHub,
) -> None:
    hub = facebook_hub
    fb_user = hub.facebook.user(forms_per_page=2, leads=PAGE_SIZE + 1)
    page = fb_user["pages"][0]
    browser = hub.browser(user="throttled")
    connection_id = hub.connect(browser, fb_user["id"])
    form = page["forms"][1]["id"]
    hub.facebook.inject(17, path_prefix=f"/{form}/leads", times=1)
    mark = hub.mark()

    run = hub.backfill(browser, connection_id, page["name"])

    assert run["status"] == "succeeded", run
    calls = [c for c in hub.graph_calls(mark) if c["path"].endswith("/leads")]
    throttled = [i for i, c in enumerate(calls) if c["status"] == 400]
    assert len(throttled) == 1
    refused, following = calls[throttled[0]], calls[throttled[0] + 1]
    assert following["time"] - refused["time"] >= 0.9, "a Graph call was made during the pause"
    leads = hub.leads(browser, connection_id=str(connection_id))
    assert len(leads) == 2 * (PAGE_SIZE + 1)
    assert len({lead["leadgen_id"] for lead in leads}) == 2 * (PAGE_SIZE + 1)


def test_a_token_facebook_refuses_needs_reauth_makes_no_more_calls_and_a_reconnect_resumes(
    facebook_hub: FacebookHub,
) -> None:
    hub = facebook_hub
    fb_user = hub.facebook.user(leads=2)
    page = fb_user["pages"][0]
    browser = hub.browser(user="refused")
    connection_id = hub.connect(browser, fb_user["id"])
    assert hub.backfill(browser, connection_id, page["name"])["status"] == "succeeded"
    hub.facebook.call("POST", "/tokens/invalidate", json={"user_id": fb_user["id"], "subcode": 460})
    hub.facebook.leads(page["forms"][0]["id"], 1)

    run = sync_now(hub, browser, connection_id)

    assert run["status"] == "failed" and "reconnect" in run["error"], run
    view = hub.connection(browser, connection_id)
    assert view["status"] == "needs_reauth"
    assert hub.capability(browser, connection_id)["state"] == "needs_reauth"
    mark = hub.mark()
    answer = browser.post(f"{hub.url}/api/v1/connections/{connection_id}/sync")
    assert answer.status_code in (200, 409) and not any((answer.json().get("runs") or {}).values())
    assert browser.get(hub.resources_url(connection_id)).status_code == 200
    assert hub.graph_calls(mark) == []

    assert hub.connect(browser, fb_user["id"], reconnect=connection_id) == connection_id
    assert sync_now(hub, browser, connection_id)["status"] == "succeeded"
    assert len(hub.leads(browser, connection_id=str(connection_id))) == 3


def test_a_poll_reads_new_leads_after_the_newest_seen_and_writes_none_twice(facebook_hub: FacebookHub) -> None:
    hub = facebook_hub
    fb_user = hub.facebook.user(leads=3)
    page = fb_user["pages"][0]
    browser = hub.browser(user="poller")
    connection_id = hub.connect(browser, fb_user["id"])
    assert hub.backfill(browser, connection_id, page["name"])["counts"]["created"] == 3
    later = hub.facebook.call("POST", f"/pages/{page['id']}/forms", json={"name": "Created later"})["id"]
    hub.facebook.leads(later, 2)
    hub.facebook.leads(page["forms"][0]["id"], 1)

    run = sync_now(hub, browser, connection_id)

    assert run["status"] == "succeeded" and not run["full_sync"], run
    assert run["counts"] == {"created": 3, "updated": 0, "deleted": 0}
    assert len(hub.leads(browser, connection_id=str(connection_id))) == 6
    assert sync_now(hub, browser, connection_id)["counts"] == {"created": 0, "updated": 0, "deleted": 0}


def test_a_page_chosen_in_two_workspaces_feeds_both_and_each_sees_a_lead_once(facebook_hub: FacebookHub) -> None:
    hub = facebook_hub
    fb_user = hub.facebook.user(leads=2)
    page = fb_user["pages"][0]
    first, second = hub.browser(user="ana", workspace="ws-one"), hub.browser(user="ben", workspace="ws-one")
    other = hub.browser(user="cyd", workspace="ws-two")
    connections = []
    for browser in (first, second, other):
        connection_id = hub.connect(browser, fb_user["id"])
        assert hub.backfill(browser, connection_id, page["name"])["status"] == "succeeded"
        connections.append(connection_id)

    with hub.sessions() as session:
        stored = session.scalar(select(func.count()).select_from(LeadRow).where(LeadRow.connection_id.in_(connections)))
    assert stored == 6
    for browser in (first, second, other):
        seen = [lead["leadgen_id"] for lead in hub.leads(browser, page_id=page["id"])]
        assert len(seen) == 2 and len(set(seen)) == 2


def test_usage_headers_saying_the_page_quota_is_spent_stop_calls_until_it_is_back(facebook_hub: FacebookHub) -> None:
    hub = facebook_hub
    fb_user = hub.facebook.user(leads=2)
    page = fb_user["pages"][0]
    browser = hub.browser(user="spender")
    connection_id = hub.connect(browser, fb_user["id"])
    spent = {"call_count": 100, "total_cputime": 20, "total_time": 20, "estimated_time_to_regain_access": 0}
    hub.facebook.settings(page_usage=spent)
    try:
        mark = hub.mark()
        run_id = hub.choose(browser, connection_id, page["name"])["run"]

        def waiting() -> dict[str, Any] | None:
            view = hub.capability(browser, connection_id)["last_run"]
            return view if view and "quota is spent" in (view["error"] or "") else None

        wait_for(waiting, timeout=20, what="the run to wait for the Page's quota")
        page_calls = [c for c in hub.graph_calls(mark) if c["path"].endswith(("/leadgen_forms", "/leads"))]
        assert page_calls and all(c["path"].endswith("/leadgen_forms") for c in page_calls), page_calls
    finally:
        hub.facebook.settings(page_usage=None)
    assert hub.wait_run(run_id)["status"] == "succeeded"
    assert len(hub.leads(browser, connection_id=str(connection_id))) == 2


def test_a_lead_shows_the_crm_contact_with_its_email_to_those_who_may_read_it(facebook_hub: FacebookHub) -> None:
    hub = facebook_hub
    google = f"g-{uuid.uuid4().hex[:8]}@sandbox.test"
    hub.admin.seed_account(google)
    address = f"Zed.{uuid.uuid4().hex[:6]}@Example.com"
    hub.admin.add_contact(
        google, {"names": [{"givenName": "Zed", "familyName": "Contact"}], "emailAddresses": [{"value": address}]}
    )
    owner, colleague = (
        hub.browser(user="zed-owner", workspace="ws-zed"),
        hub.browser(user="zed-mate", workspace="ws-zed"),
    )
    hub.connect_google(owner, google)
    fb_user = hub.facebook.user()
    page = fb_user["pages"][0]
    hub.facebook.leads(page["forms"][0]["id"], field_data=[{"name": "email", "values": [f" {address.lower()}"]}])
    connection_id = hub.connect(owner, fb_user["id"])
    assert hub.backfill(owner, connection_id, page["name"])["status"] == "succeeded"

    (lead,) = hub.leads(owner, connection_id=str(connection_id))
    assert lead["contact"] is not None and lead["contact"]["display_name"] == "Zed Contact"
    (shared,) = hub.leads(colleague, connection_id=str(connection_id))
    assert shared["leadgen_id"] == lead["leadgen_id"] and shared["contact"] is None


def test_a_permission_error_shows_grant_access_and_stops_the_capability(facebook_hub: FacebookHub) -> None:
    hub = facebook_hub
    fb_user = hub.facebook.user(leads=1)
    page = fb_user["pages"][0]
    browser = hub.browser(user="unpermitted")
    connection_id = hub.connect(browser, fb_user["id"])
    assert hub.backfill(browser, connection_id, page["name"])["status"] == "succeeded"
    hub.facebook.inject(200, path_prefix=f"/{page['id']}/leadgen_forms", message="(#200) Requires leads_retrieval")

    run = sync_now(hub, browser, connection_id)

    assert run["status"] == "failed" and "grant access" in run["error"], run
    assert hub.capability(browser, connection_id)["state"] == "grant_access"
    assert hub.connection(browser, connection_id)["status"] == "active"
    mark = hub.mark()
    answer = browser.post(f"{hub.url}/api/v1/connections/{connection_id}/sync")
    assert answer.status_code == 200 and not any(answer.json()["runs"].values())
    assert hub.graph_calls(mark) == []


def test_a_page_another_connection_still_chose_stays_subscribed_when_one_deselects_it(
    facebook_hub: FacebookHub,
) -> None:
    hub = facebook_hub
    fb_user = hub.facebook.user()
    page = fb_user["pages"][0]
    mine, theirs = hub.browser(user="dee", workspace="ws-dee"), hub.browser(user="eve", workspace="ws-eve")
    connections = [hub.connect(browser, fb_user["id"]) for browser in (mine, theirs)]
    for browser, connection_id in zip((mine, theirs), connections, strict=True):
        assert hub.backfill(browser, connection_id, page["name"])["status"] == "succeeded"
    mark = hub.mark()

    kept = hub.choose(mine, connections[0], page["name"], selected=False)

    assert kept["undone_at_provider"] is None
    assert [c for c in hub.graph_calls(mark) if c["method"] == "DELETE"] == []
    assert hub.facebook.summary(fb_user["id"])["pages"][0]["subscribed_apps"] == {hub.app_id: ["leadgen"]}
    assert hub.choose(theirs, connections[1], page["name"], selected=False)["undone_at_provider"] is True
    assert hub.facebook.summary(fb_user["id"])["pages"][0]["subscribed_apps"] == {}
