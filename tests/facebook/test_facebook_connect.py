"""Connecting a Facebook account: declined permissions, asking again on the same connection, choosing Pages,
the backfill, deselecting, disconnecting, and the notice before the token ends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

from tests.facebook.conftest import ALL_PERMISSIONS, FacebookHub


def leads_calls(calls: list[dict[str, object]]) -> list[dict[str, object]]:
    return [c for c in calls if str(c["path"]).endswith(("/leads", "/leadgen_forms"))]


def test_declined_leads_retrieval_shows_grant_access_then_rerequest_on_the_same_connection(
    facebook_hub: FacebookHub,
) -> None:
    hub = facebook_hub
    fb_user = hub.facebook.user(leads=3)
    page = fb_user["pages"][0]
    browser = hub.browser(user="decliner")
    mark = hub.mark()
    declined = [p for p in ALL_PERMISSIONS if p != "leads_retrieval"]
    connection_id = hub.connect(browser, fb_user["id"], permissions=declined)

    capability = hub.capability(browser, connection_id)
    assert capability["state"] == "grant_access"
    assert ["leads_retrieval"] in capability["missing_scopes"]
    assert "leads_retrieval" not in hub.connection(browser, connection_id)["granted_scopes"]
    answer = browser.put(hub.resources_url(connection_id, "0" * 32), json={"selected": True})
    assert answer.status_code == 404
    assert leads_calls(hub.graph_calls(mark)) == []

    back, dialog = hub.login(browser, fb_user["id"], reconnect=connection_id)
    assert parse_qs(urlsplit(dialog).query)["auth_type"] == ["rerequest"]
    done = browser.get(back.headers["location"])
    assert done.status_code == 303 and done.headers["location"] == f"/?connected={connection_id}"
    assert hub.capability(browser, connection_id)["state"] == "ok"

    run = hub.backfill(browser, connection_id, page["name"])
    assert run["status"] == "succeeded", run
    assert len(hub.leads(browser, connection_id=str(connection_id))) == 3


def test_choosing_a_page_subscribes_it_and_backfills_its_leads_with_their_answers(facebook_hub: FacebookHub) -> None:
    hub = facebook_hub
    fb_user = hub.facebook.user(forms_per_page=2, leads=5)
    page = fb_user["pages"][0]
    form = page["forms"][0]["id"]
    messy = [
        {"name": "email", "values": ["Zoë@Example.com"]},
        {"name": "phone_number", "values": ["+44 20 7946 0958"]},
        {"name": "full_name", "values": ["Zoë Ünïcode"]},
        {"name": "favourite_colour", "values": ["Blue", "Green"]},
        {"name": "comments", "values": [""]},
    ]
    messy_id = hub.facebook.leads(form, field_data=messy, is_organic=True, platform="ig")[0]
    local = [{"name": "phone_number", "values": ["020 7946 0958"]}, {"name": "email", "values": ["x@example.com"]}]
    local_id = hub.facebook.leads(form, field_data=local)[0]
    browser = hub.browser(user="chooser")
    connection_id = hub.connect(browser, fb_user["id"])
    mark = hub.mark()

    run = hub.backfill(browser, connection_id, page["name"])

    assert run["status"] == "succeeded", run
    calls = hub.graph_calls(mark)
    assert [c for c in calls if c["method"] == "POST" and c["path"].endswith(f"{page['id']}/subscribed_apps")]
    assert hub.facebook.summary(fb_user["id"])["pages"][0]["subscribed_apps"] == {hub.app_id: ["leadgen"]}
    leads = {lead["leadgen_id"]: lead for lead in hub.leads(browser, connection_id=str(connection_id))}
    assert len(leads) == 12
    lead = leads[messy_id]
    assert (lead["email"], lead["phone"], lead["phone_e164"]) == (
        "Zoë@Example.com",
        "+44 20 7946 0958",
        "+442079460958",
    )
    assert (lead["full_name"], lead["is_organic"], lead["platform"], lead["page_id"]) == (
        "Zoë Ünïcode",
        True,
        "ig",
        page["id"],
    )
    answers = {answer["key"]: answer for answer in lead["answers"]}
    assert answers["favourite_colour"]["values"] == ["Blue", "Green"]
    assert answers["comments"]["values"] == [""]
    assert leads[local_id]["phone"] == "020 7946 0958" and leads[local_id]["phone_e164"] is None
    assert all(lead["form_id"] and lead["created_time"] for lead in leads.values())


def test_deselecting_a_page_unsubscribes_it(facebook_hub: FacebookHub) -> None:
    hub = facebook_hub
    fb_user = hub.facebook.user(leads=1)
    page = fb_user["pages"][0]
    browser = hub.browser(user="deselector")
    connection_id = hub.connect(browser, fb_user["id"])
    assert hub.backfill(browser, connection_id, page["name"])["status"] == "succeeded"
    mark = hub.mark()

    answer = hub.choose(browser, connection_id, page["name"], selected=False)

    assert answer["undone_at_provider"] is True
    deleted = [c for c in hub.graph_calls(mark) if c["method"] == "DELETE"]
    assert [c["path"].rsplit("/", 2)[-2:] for c in deleted] == [[page["id"], "subscribed_apps"]]
    assert hub.facebook.summary(fb_user["id"])["pages"][0]["subscribed_apps"] == {}


def test_disconnect_unsubscribes_every_page_then_deletes_the_permissions(facebook_hub: FacebookHub) -> None:
    hub = facebook_hub
    fb_user = hub.facebook.user(pages=2, leads=1)
    browser = hub.browser(user="leaver")
    connection_id = hub.connect(browser, fb_user["id"])
    for page in fb_user["pages"]:
        assert hub.backfill(browser, connection_id, page["name"])["status"] == "succeeded"
    mark = hub.mark()

    answer = browser.delete(f"{hub.url}/api/v1/connections/{connection_id}")

    assert answer.status_code == 200, answer.text
    assert answer.json()["subscriptions_undone"] is True and answer.json()["revoked_at_provider"] is True
    deleted = [c["path"] for c in hub.graph_calls(mark) if c["method"] == "DELETE"]
    pages = sorted(p["id"] for p in fb_user["pages"])
    assert sorted(path.rsplit("/", 2)[-2] for path in deleted[:2]) == pages
    assert all(path.endswith("/subscribed_apps") for path in deleted[:2])
    assert deleted[2:] and deleted[-1].endswith("/me/permissions")
    grants = [g for g in hub.facebook.call("GET", "/grants") if g["user_id"] == fb_user["id"]]
    assert all(not g["granted"] for g in grants), grants


def test_a_token_six_days_from_its_end_asks_to_reconnect_soon(facebook_hub: FacebookHub) -> None:
    hub = facebook_hub
    fb_user = hub.facebook.user()
    browser = hub.browser(user="soon")
    before = hub.facebook.settings()
    hub.facebook.settings(long_token_lifetime=6 * 86400)
    try:
        soon = hub.connect(browser, fb_user["id"])
    finally:
        hub.facebook.settings(long_token_lifetime=before["long_token_lifetime"])
    later = hub.connect(hub.browser(user="later"), fb_user["id"])

    notices = hub.connection(browser, soon)["notices"]
    assert [n["notice"] for n in notices] == ["reconnect_soon"]
    left = datetime.fromisoformat(notices[0]["access_ends_at"]) - datetime.now(UTC)
    assert timedelta(days=5.9) < left < timedelta(days=6.1)
    assert hub.connection(hub.browser(user="later"), later)["notices"] == []
    page = browser.get(f"{hub.url}/")
    assert "Reconnect soon" in page.text
