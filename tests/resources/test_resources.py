"""Resources inside a connection, through a connector installed by entry point: the chooser lists them from the
provider, each selected one syncs as its own stream, deselecting stops it and undoes its subscription, one the
provider no longer lists is marked gone at the next full pass, and a burst of requests becomes one run."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from threading import Barrier

import pytest
import redis
from sqlalchemy import select

from connectors.registry import available
from core.models import utcnow
from sync.celery_app import make_celery
from sync.dispatch import hand_over, hand_over_batches
from sync.models import Checkpoint, ConnectionResource, Schedule, SyncRun
from sync.runtime import Runtime
from sync.schedule import tick
from sync.wiring import build_engine
from tests.conftest import wait_for
from tests.google.conftest import new_account
from tests.resources.conftest import CAPABILITY, BooksHub
from tests.resources.provider import BooksProvider


@pytest.fixture(scope="module")
def books(books_hub_factory: Callable[..., BooksHub]) -> BooksHub:
    return books_hub_factory()


@pytest.fixture(autouse=True)
def fresh_provider(provider: BooksProvider) -> BooksProvider:
    provider.reset()
    return provider


def runs_of(books: BooksHub, resource_id: str) -> list[SyncRun]:
    with books.hub.sessions() as session:
        return list(session.scalars(select(SyncRun).where(SyncRun.resource == resource_id)))


def test_the_connector_comes_from_its_entry_point_not_from_the_hub() -> None:
    spec = available()["loopback_books"]
    assert not type(spec.capabilities[0].lifecycle).__module__.startswith("connectors.")
    assert spec.capabilities[0].resources is not None


def test_two_selected_books_sync_as_two_streams_with_a_run_schedule_and_checkpoint_each(books: BooksHub) -> None:
    provider = books.provider
    work, home = provider.add_book("Work", people=3), provider.add_book("Home", people=2)
    provider.add_book("Club", people=1)
    browser, connection_id = books.connect()

    listed = books.resources(browser, connection_id)
    assert {name: (r["selected"], r["gone"], r["last_run"]) for name, r in listed.items()} == {
        name: (False, False, None) for name in ("Work", "Home", "Club")
    }
    assert len(work) > 64 and str(uuid.UUID(listed["Work"]["id"])) == listed["Work"]["id"]

    chosen = books.select(browser, connection_id, "Work", "Home")
    assert provider.subscriptions == [("subscribe", work), ("subscribe", home)]
    assert books.external_ids(browser, connection_id) == provider.external_ids(work) | provider.external_ids(home)
    shown = books.resources(browser, connection_id)
    assert shown["Club"]["last_run"] is None and shown["Club"]["schedule"] is None
    for name in ("Work", "Home"):
        assert shown[name]["last_run"]["status"] == "succeeded" and shown[name]["schedule"] is not None
    streams = {f"{CAPABILITY}/{resource_id}" for resource_id in chosen.values()}
    with books.hub.sessions() as session:
        stored = set(session.scalars(select(Checkpoint.stream).where(Checkpoint.connection_id == connection_id)))
        planned = set(session.scalars(select(Schedule.resource).where(Schedule.connection_id == connection_id)))
    assert stored == streams and planned == set(chosen.values())

    provider.add_people(work, 1)
    answer = browser.post(f"{books.hub.url}/api/v1/connections/{connection_id}/sync")
    runs = answer.json()["runs"]
    assert set(runs) == streams, "sync now runs each selected book's stream, and only those"
    for run_id in runs.values():
        assert books.hub.wait_run(browser, connection_id, run_id)["status"] == "succeeded"
    assert books.external_ids(browser, connection_id) == provider.external_ids(work) | provider.external_ids(home)
    assert [call.after for call in provider.calls_for(work)][-1] == 3, "the second run resumed from its cursor"


def test_deselecting_stops_its_run_undoes_its_subscription_and_keeps_its_records(books: BooksHub) -> None:
    provider = books.provider
    work = provider.add_book("Work", people=2)
    provider.add_book("Home", people=2)
    browser, connection_id = books.connect()
    chosen = books.select(browser, connection_id, "Work", "Home")
    kept = books.external_ids(browser, connection_id)

    provider.add_people(work, 2)
    provider.books[work].delay = 3.0
    runs = browser.post(f"{books.hub.url}/api/v1/connections/{connection_id}/sync").json()["runs"]
    wait_for(lambda: any(call.after for call in provider.calls_for(work)), what="Work's run to ask for its page")

    answer = books.choose(browser, connection_id, chosen["Work"], False)
    assert answer["changed"] and answer["runs_stopped"] == 1
    assert answer["undone_at_provider"] is True and answer["records_deleted"] == 0
    assert provider.subscriptions[-1] == ("unsubscribe", work)
    stopped = books.hub.wait_run(browser, connection_id, runs[f"{CAPABILITY}/{chosen['Work']}"])
    assert stopped["status"] == "cancelled" and stopped["error"] == "stopped: the resource was deselected"
    home_run = books.hub.wait_run(browser, connection_id, runs[f"{CAPABILITY}/{chosen['Home']}"])
    assert home_run["status"] == "succeeded"  # after Work's slice: the worker works one task at a time
    assert books.external_ids(browser, connection_id) == kept, "kept, and the page in flight was never written"

    provider.books[work].delay = 0.0
    again = browser.post(f"{books.hub.url}/api/v1/connections/{connection_id}/sync").json()["runs"]
    assert set(again) == {f"{CAPABILITY}/{chosen['Home']}"}
    books.hub.wait_run(browser, connection_id, again[f"{CAPABILITY}/{chosen['Home']}"])
    shown = books.resources(browser, connection_id)["Work"]
    assert not shown["selected"] and shown["schedule"] is None
    assert [run.status for run in runs_of(books, chosen["Work"])].count("succeeded") == 1, "only the first run"


def test_a_book_the_provider_refuses_to_subscribe_stays_unselected(books: BooksHub) -> None:
    work = books.provider.add_book("Work", people=1)
    books.provider.books[work].subscribable = False
    browser, connection_id = books.connect()
    resource_id = books.resources(browser, connection_id)["Work"]["id"]
    answer = browser.put(books.url(connection_id, resource_id), json={"selected": True})
    assert answer.status_code == 502 and "refused" in answer.json()["detail"]
    shown = books.resources(browser, connection_id)["Work"]
    assert not shown["selected"] and shown["last_run"] is None and shown["schedule"] is None


def test_deselecting_with_delete_data_deletes_its_records_and_only_those(books: BooksHub) -> None:
    provider = books.provider
    work, home = provider.add_book("Work", people=2), provider.add_book("Home", people=3)
    browser, connection_id = books.connect()
    chosen = books.select(browser, connection_id, "Work", "Home")
    assert books.external_ids(browser, connection_id) == provider.external_ids(work) | provider.external_ids(home)

    answer = books.choose(browser, connection_id, chosen["Work"], False, delete_data=True)
    assert answer["records_deleted"] == 2
    assert books.external_ids(browser, connection_id) == provider.external_ids(home)


def test_a_book_no_longer_listed_is_marked_gone_at_the_next_full_pass_and_stops_syncing(books: BooksHub) -> None:
    provider = books.provider
    work, home = provider.add_book("Work", people=2), provider.add_book("Home", people=2)
    browser, connection_id = books.connect()
    chosen = books.select(browser, connection_id, "Work", "Home")
    synced = books.external_ids(browser, connection_id)

    provider.books[home].listed = False
    provider.books[work].expired = True  # Work's next run finds its cursor refused: a full pass
    hub = books.hub
    engine = build_engine(Runtime(hub.settings, hub.engine, hub.sessions, redis.Redis.from_url(hub.settings.redis_url)))
    waiting = engine.request(connection_id, CAPABILITY, "push", chosen["Home"], not_before=utcnow() + timedelta(1))
    assert waiting is not None  # queued, and not sent before the listing
    listings = len(provider.calls_for(None, "/books"))
    work_run = engine.request(connection_id, CAPABILITY, "manual", chosen["Work"])
    assert work_run is not None and hand_over(hub.sessions, make_celery(hub.settings), work_run)
    full = hub.wait_run(browser, connection_id, str(work_run))
    assert full["status"] == "succeeded" and full["full_sync"]
    assert len(provider.calls_for(None, "/books")) == listings + 1, "the full pass listed the books first"
    ended = hub.wait_run(browser, connection_id, str(waiting))
    assert ended["status"] == "cancelled" and ended["error"] == "stopped: the provider no longer lists this resource"
    with books.hub.sessions() as session:
        gone = session.get_one(ConnectionResource, uuid.UUID(chosen["Home"]))
        assert gone.gone_at is not None and gone.selected
        assert session.get(Schedule, (connection_id, CAPABILITY, chosen["Home"])) is None
    assert books.external_ids(browser, connection_id) == synced, "a gone book's records are kept"

    again = browser.post(f"{books.hub.url}/api/v1/connections/{connection_id}/sync").json()["runs"]
    assert set(again) == {f"{CAPABILITY}/{chosen['Work']}"}, "a gone book stops syncing"
    books.hub.wait_run(browser, connection_id, again[f"{CAPABILITY}/{chosen['Work']}"])
    shown = books.resources(browser, connection_id)["Home"]
    assert shown["gone"] and shown["selected"] and shown["schedule"] is None
    conflict = browser.put(books.url(connection_id, chosen["Home"]), json={"selected": True})
    assert conflict.status_code == 409 and "no longer lists" in conflict.json()["detail"]

    provider.books[home].listed = True
    assert not books.resources(browser, connection_id)["Home"]["gone"]
    back = browser.post(f"{books.hub.url}/api/v1/connections/{connection_id}/sync").json()["runs"]
    assert set(back) == {f"{CAPABILITY}/{chosen['Work']}", f"{CAPABILITY}/{chosen['Home']}"}
    for run_id in back.values():
        assert books.hub.wait_run(browser, connection_id, run_id)["status"] == "succeeded"


def test_a_burst_of_requests_for_one_book_with_not_before_becomes_one_run(books: BooksHub) -> None:
    provider = books.provider
    work = provider.add_book("Work", people=1)
    browser, connection_id = books.connect()
    resource_id = books.select(browser, connection_id, "Work")["Work"]
    provider.add_people(work, 1)
    hub = books.hub
    engine = build_engine(Runtime(hub.settings, hub.engine, hub.sessions, redis.Redis.from_url(hub.settings.redis_url)))
    celery = make_celery(hub.settings)

    def ticked(run_id: uuid.UUID) -> bool:
        """Whether beat's tick hands the run to the workers now."""
        tick(hub.sessions, hub.settings, lambda r, at: hand_over_batches(hub.sessions, celery, r, at), engine.worked_on)
        with hub.sessions() as session:
            return session.get_one(SyncRun, run_id).enqueued_at is not None

    due = utcnow() + timedelta(seconds=1.5)
    barrier = Barrier(8)

    def push(_: int) -> uuid.UUID | None:
        barrier.wait()
        return engine.request(connection_id, CAPABILITY, "push", resource_id, not_before=due)

    with ThreadPoolExecutor(8) as pool:
        ids = set(pool.map(push, range(8)))
    assert len(ids) == 1 and None not in ids
    (run_id,) = ids
    assert not ticked(run_id), "not handed to a worker before its time"
    wait_for(lambda: utcnow() > due, timeout=30, what="the burst's not_before to pass")
    assert engine.request(connection_id, CAPABILITY, "push", resource_id, not_before=utcnow() + timedelta(1)) == run_id
    assert ticked(run_id)
    assert hub.wait_run(browser, connection_id, str(run_id))["status"] == "succeeded"
    assert [run.trigger for run in runs_of(books, resource_id)].count("push") == 1
    first, burst = (call.after for call in provider.calls_for(work))  # the first sync, then one run for the burst
    assert first == 0 and burst


def test_a_request_without_not_before_brings_a_waiting_one_forward(books: BooksHub) -> None:
    books.provider.add_book("Work", people=1)
    browser, connection_id = books.connect()
    resource_id = books.select(browser, connection_id, "Work")["Work"]
    hub = books.hub
    engine = build_engine(Runtime(hub.settings, hub.engine, hub.sessions, redis.Redis.from_url(hub.settings.redis_url)))
    later = engine.request(connection_id, CAPABILITY, "push", resource_id, not_before=utcnow() + timedelta(hours=1))
    assert engine.request(connection_id, CAPABILITY, "manual", resource_id) == later
    with hub.sessions() as session:
        assert session.get_one(SyncRun, later).not_before is None


def test_the_chooser_answers_for_the_users_own_connection_and_a_capability_with_resources(books: BooksHub) -> None:
    books.provider.add_book("Work", people=1)
    browser = books.hub.browser(user="owner", workspace="ws-own")
    account = books.hub.connect(browser, new_account(books.hub.admin, contacts=0), capabilities="contacts,books")
    resource_id = books.resources(browser, account)["Work"]["id"]
    listings = len(books.provider.calls_for(None, "/books"))

    outsider = books.hub.browser(user="owner", workspace="ws-other")
    colleague = books.hub.browser(user="colleague", workspace="ws-own")
    for stranger in (outsider, colleague):
        assert stranger.get(books.url(account)).status_code == 404
        assert stranger.put(books.url(account, resource_id), json={"selected": True}).status_code == 404
    assert len(books.provider.calls_for(None, "/books")) == listings, "a stranger's request reaches no provider"
    assert books.provider.subscriptions == []

    contacts = f"{books.hub.url}/api/v1/connections/{account}/capabilities/contacts/resources"
    assert browser.get(contacts).status_code == 404, "contacts lists no resources"
    assert browser.put(books.url(account, str(uuid.uuid4())), json={"selected": True}).status_code == 404
    assert browser.put(books.url(account, "not-a-uuid"), json={"selected": True}).status_code == 422


def test_disconnect_undoes_every_selected_resources_subscription_before_it_revokes(books: BooksHub) -> None:
    provider = books.provider
    work, home = provider.add_book("Work", people=1), provider.add_book("Home", people=1)
    provider.add_book("Unchosen", people=1)
    browser, connection_id = books.connect()
    books.select(browser, connection_id, "Work", "Home")
    assert sorted(provider.subscriptions) == sorted([("subscribe", home), ("subscribe", work)])

    answer = browser.delete(f"{books.hub.url}/api/v1/connections/{connection_id}", params={"delete_data": "true"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["subscriptions_undone"] is True and answer.json()["revoked_at_provider"] is True
    assert sorted(provider.subscriptions[2:]) == sorted([("unsubscribe", home), ("unsubscribe", work)])
    assert books.external_ids(browser, connection_id) == set()
