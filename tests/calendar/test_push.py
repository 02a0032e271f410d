"""Push channels: opened when a calendar is selected, notifications stored before the 200 and folded into one
run, forged tokens refused, unknown channels ignored, renewal (new before old stopped), stop on deselect and
disconnect, and a dropped notification's change arriving through the poll."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import func, select, update

from connectors.registry import capabilities_of
from core.identity import issue_token
from core.models import utcnow
from hub.app import create_app
from sync.models import PushChannel, Schedule
from sync.schedule import interval_seconds
from tests.calendar.conftest import CalendarHub
from tests.calendar.test_calendar_sync import at
from tests.conftest import LiveServer, settings_from_env, wait_for
from tests.signin import csrf_of
from webhooks.models import WebhookDelivery

SLUG = "google_calendar"


def connected(cal: CalendarHub) -> tuple[httpx.Client, uuid.UUID, str, str]:
    """A new account connected with its primary calendar selected and first synced: (browser, connection,
    account, the primary's resource id)."""
    account = cal.account()
    browser, connection_id = cal.connect(account)
    primary = next(r for r in cal.calendars(browser, connection_id).values() if r["selected"])
    cal.settled(connection_id, primary["id"], 1)
    return browser, connection_id, account, primary["id"]


def live(cal: CalendarHub, account: str) -> list[dict[str, object]]:
    return [dict(c) for c in cal.admin.calendar.channels(account) if c["live"]]


def deliveries(cal: CalendarHub, channel_id: str) -> list[WebhookDelivery]:
    with cal.hub.sessions() as session:
        return list(
            session.scalars(
                select(WebhookDelivery).where(
                    WebhookDelivery.connector == SLUG, WebhookDelivery.dedupe_key.like(f"{channel_id}:%")
                )
            )
        )


def test_a_burst_of_notifications_is_one_incremental_sync(cal: CalendarHub) -> None:
    browser, connection_id, account, primary = connected(cal)
    channels = live(cal, account)
    assert len(channels) == 1 and channels[0]["token"], "selecting the calendar opened a channel with a token"
    channel_id = str(channels[0]["id"])
    wait_for(lambda: [d for d in deliveries(cal, channel_id) if d.status == "ignored"], what="the sync message")
    with cal.hub.sessions() as session:
        stored = session.get_one(PushChannel, channel_id)
        assert stored.token_hash != str(channels[0]["token"]).encode() and len(stored.token_hash) == 32

    today = datetime.now(UTC).date()
    added = cal.admin.calendar.add_event(
        account, account, {"summary": "Pushed", "start": at(today, 16), "end": at(today, 17)}
    )
    runs_before = len(cal.runs(connection_id, primary))
    cal.admin.calendar.notify(channel_id, count=20)

    def finished() -> bool:
        found = [d for d in deliveries(cal, channel_id) if d.payload is None or d.payload.get("state") != "sync"]
        return len(found) >= 20 and all(d.status == "processed" for d in found)

    wait_for(finished, timeout=30, what="the notifications processed")
    runs = cal.settled(connection_id, primary, runs_before + 1)
    pushed = runs[runs_before:]
    assert [(run.trigger, run.status, run.full_sync) for run in pushed] == [("webhook", "succeeded", False)]
    assert added["id"] in {
        s["external_id"] for e in cal.events(browser, connection_id=str(connection_id)) for s in e["sources"]
    }


def test_forged_and_unknown_channels(cal: CalendarHub) -> None:
    _, connection_id, account, primary = connected(cal)
    channel_id = str(live(cal, account)[0]["id"])
    url = f"{cal.hub.url}/webhooks/{SLUG}"
    headers = {
        "x-goog-channel-id": channel_id,
        "x-goog-channel-token": "forged-token",
        "x-goog-message-number": "777",
        "x-goog-resource-state": "exists",
        "x-goog-resource-id": "whatever",
    }
    runs_before = len(cal.runs(connection_id, primary))
    assert httpx.post(url, headers=headers).status_code == 403
    assert not [d for d in deliveries(cal, channel_id) if d.dedupe_key.endswith(":777")], "nothing stored"

    unknown = str(uuid.uuid4())
    answer = httpx.post(url, headers={**headers, "x-goog-channel-id": unknown})
    assert answer.status_code == 200
    assert [d.status for d in deliveries(cal, unknown)] == ["ignored"]
    assert len(cal.runs(connection_id, primary)) == runs_before, "no run"


def test_deselect_stops_the_channel_and_disconnect_stops_every_channel(cal: CalendarHub) -> None:
    browser, connection_id, account, _primary = connected(cal)
    cal.admin.calendar.add_calendar(account, "Team")
    listed = cal.calendars(browser, connection_id)
    cal.choose(browser, connection_id, listed["Team"]["id"], True)
    assert len(live(cal, account)) == 2
    cal.choose(browser, connection_id, listed["Team"]["id"], False)
    remaining = live(cal, account)
    assert len(remaining) == 1 and remaining[0]["calendar_id"] == account, "the deselected calendar's channel stopped"

    stopped_id = next(str(c["id"]) for c in cal.admin.calendar.channels(account) if not c["live"])
    answer = httpx.post(
        f"{cal.hub.url}/webhooks/{SLUG}",
        headers={"x-goog-channel-id": stopped_id, "x-goog-message-number": "5", "x-goog-resource-state": "exists"},
    )
    assert answer.status_code == 200 and [
        d.status for d in deliveries(cal, stopped_id) if d.dedupe_key.endswith(":5")
    ] == ["ignored"]

    assert browser.delete(f"{cal.hub.url}/api/v1/connections/{connection_id}").status_code in (200, 202, 204)
    wait_for(lambda: not live(cal, account), timeout=30, what="every channel stopped")


def test_a_channel_near_expiry_is_renewed_new_before_old(cal: CalendarHub) -> None:
    from sync.celery_app import make_celery

    _, connection_id, account, _primary = connected(cal)
    old = live(cal, account)[0]
    make_celery(cal.hub.settings).send_task(
        "synchub.maintenance.renew_channels", queue="maintenance", ignore_result=True
    )

    def renewed() -> list[dict[str, object]] | None:
        channels = cal.admin.calendar.channels(account)
        fresh = [c for c in channels if c["live"] and c["id"] != old["id"]]
        gone = [c for c in channels if c["id"] == old["id"] and not c["live"]]
        return [dict(c) for c in channels] if fresh and gone else None

    channels = wait_for(renewed, timeout=30, what="the channel renewed")
    new = next(c for c in channels if c["live"])
    stopped = next(c for c in channels if c["id"] == old["id"])
    assert float(new["created"]) < float(stopped["stopped"]), "the new channel opened before the old one stopped"  # type: ignore[arg-type]

    def unstopped() -> int:
        with cal.hub.sessions() as session:
            found = session.scalar(
                select(func.count())
                .select_from(PushChannel)
                .where(PushChannel.connection_id == connection_id, PushChannel.stopped_at.is_(None))
            )
        return int(found or 0)

    wait_for(lambda: unstopped() == 1, timeout=10, what="the old channel marked stopped")


def test_a_dropped_notification_arrives_through_the_poll(cal: CalendarHub) -> None:
    browser, connection_id, account, primary = connected(cal)
    today = datetime.now(UTC).date()
    mark = cal.admin.calendar.notifications(account=account)
    cal.admin.calendar.settings(calendar_drop_notifications=True)
    try:
        added = cal.admin.calendar.add_event(
            account,
            account,
            {"summary": "Unpushed", "start": at(today + timedelta(days=1), 8), "end": at(today + timedelta(days=1), 9)},
        )
        dropped = cal.admin.calendar.notifications(account=account, after=mark[-1]["id"] if mark else 0)
    finally:
        cal.admin.calendar.settings(calendar_drop_notifications=False)
    assert [n["state"] for n in dropped] == ["dropped"]
    # The poll, as the schedule makes it due, reads the change.
    with cal.hub.sessions.begin() as session:
        session.execute(
            update(Schedule)
            .where(Schedule.connection_id == connection_id, Schedule.resource == primary)
            .values(next_run_at=utcnow())
        )
    runs = cal.settled(connection_id, primary, 2)
    assert [run.trigger for run in runs] == ["selected", "schedule"]
    # The poll stays on as a backstop, four times less often while the channel is live (jitter adds at most half).
    with cal.hub.sessions() as session:
        row = session.get_one(Schedule, (connection_id, "calendar", primary))
        spec, capability = capabilities_of(cal.hub.settings, "google")["calendar"]
        plain = interval_seconds(cal.hub.settings, spec, capability, row)
    assert (row.next_run_at - utcnow()).total_seconds() > plain * 2, "polled less often while a channel is live"
    assert added["id"] in {
        s["external_id"] for e in cal.events(browser, connection_id=str(connection_id)) for s in e["sources"]
    }


def test_the_page_lists_calendars_with_checkboxes(cal: CalendarHub) -> None:
    browser, connection_id, account, primary = connected(cal)
    cal.admin.calendar.add_calendar(account, "Team")
    team = cal.calendars(browser, connection_id)["Team"]["id"]
    page = browser.get(f"{cal.hub.url}/")
    assert page.status_code == 200
    assert f'name="resource" value="{primary}" checked' in page.text and f'name="resource" value="{team}">' in page.text
    assert "polled only" not in page.text, "the sandbox's http address is allowed in these tests"
    form = f"{cal.hub.url}/connections/{connection_id}/resources/calendar"
    saved = browser.post(form, data={"csrf_token": csrf_of(page), "resource": [team]}, follow_redirects=False)
    assert saved.status_code == 303, saved.text
    chosen = {r["id"]: r["selected"] for r in cal.calendars(browser, connection_id).values()}
    assert chosen == {primary: False, team: True}
    team_id = next(c["id"] for c in cal.admin.calendar.calendars(account) if c["summary"] == "Team")
    assert [c["calendar_id"] for c in live(cal, account)] == [team_id], "a channel for the ticked one only"


def test_an_http_public_url_opens_no_channel_and_the_page_says_polled_only(cal: CalendarHub) -> None:
    """Channels only to https (Google refuses other addresses): the same hub, its dev setting off, opens none when a
    calendar is selected, and its settings page says the calendars are polled only. The poll still syncs it."""
    user = f"strict-{uuid.uuid4().hex[:6]}"
    account = cal.account()
    browser, connection_id = cal.connect(account, cal.hub.browser(user=user, workspace="ws-cal"))
    primary = next(r for r in cal.calendars(browser, connection_id).values() if r["selected"])
    cal.settled(connection_id, primary["id"], 1)
    cal.admin.calendar.add_calendar(account, "Team")
    bearer = {"authorization": f"Bearer {issue_token(cal.hub.jwt_secret, user, 'ws-cal', 600)}"}
    env = {**cal.hub.env, "SYNCHUB_GOOGLE_CALENDAR__PUSH_ALLOW_HTTP": "false"}
    with LiveServer(create_app(settings_from_env(env), cal.hub.engine)) as strict:
        resources = f"{strict.url}/api/v1/connections/{connection_id}/capabilities/calendar/resources"
        team = next(r["id"] for r in browser.get(resources, headers=bearer).json()["resources"] if r["name"] == "Team")
        chosen = browser.put(f"{resources}/{team}", json={"selected": True}, headers=bearer)
        assert chosen.status_code == 200, chosen.text
        assert [c["calendar_id"] for c in live(cal, account)] == [account], "no channel for the calendar chosen here"
        assert "polled only" in browser.get(f"{strict.url}/").text
    assert "polled only" not in browser.get(f"{cal.hub.url}/").text, "the sandbox's http is allowed on the other"
    assert cal.settled(connection_id, team, 1)[-1].status == "succeeded", "selected and synced, by polling"
