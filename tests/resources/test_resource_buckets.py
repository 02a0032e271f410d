"""Rate buckets a connector declares: one per resource, shared by every connection to it and separate from the
next resource's; and the app's bucket keyed by what the connector names (here the provider's host)."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit

import pytest

from connectors.base import Resource, StreamContext
from connectors.registry import available, settings_of
from sync import guard
from sync.models import SyncRun
from tests.conftest import wait_for
from tests.resources.conftest import BooksHub
from tests.resources.provider import BooksProvider

THROTTLED = "will retry: waiting"


@pytest.fixture(scope="module")
def books(books_hub_factory: Callable[..., BooksHub]) -> BooksHub:
    # Two requests a minute per book: one token at once, the next a minute later.
    return books_hub_factory(
        SYNCHUB_LOOPBACK_BOOKS__RESOURCE_REQUESTS_PER_MINUTE="2", SYNCHUB_LOOPBACK_BOOKS__PAGE_SIZE="1"
    )


@pytest.fixture(autouse=True)
def fresh_provider(provider: BooksProvider) -> BooksProvider:
    provider.reset()
    return provider


def test_a_throttled_book_does_not_hold_back_another_book(books: BooksHub) -> None:
    provider = books.provider
    big = provider.add_book("Big", people=3, push=False)
    small = provider.add_book("Small", people=1, push=False)
    browser, connection_id = books.connect()
    listed = books.resources(browser, connection_id)

    slow = books.choose(browser, connection_id, listed["Big"]["id"], True)["run"]

    def throttled() -> bool:
        with books.hub.sessions() as session:
            run = session.get_one(SyncRun, slow)
            return run.status in ("queued", "waiting") and (run.error or "").startswith(THROTTLED)

    wait_for(throttled, timeout=30, what="Big's second page to wait for Big's bucket")
    assert len(provider.calls_for(big)) == 1, "the second page was never sent"

    quick = books.choose(browser, connection_id, listed["Small"]["id"], True)["run"]
    assert books.hub.wait_run(browser, connection_id, quick)["status"] == "succeeded"
    assert len(provider.calls_for(small)) == 1
    assert throttled(), "Big still waits for its own bucket"


class NoTokens:
    def access_token(self) -> str:
        raise AssertionError("no call is made")

    def rejected(self, token: str) -> str:
        raise AssertionError("no call is made")


def test_buckets_are_keyed_by_what_the_connector_declares(books: BooksHub) -> None:
    settings = books.hub.settings
    spec, contacts = available()["loopback_books"], available()["google_contacts"]

    def context(connection: str, resource: Resource | None = None, of: object = spec) -> StreamContext:
        section = settings_of(settings, of)  # type: ignore[arg-type]
        return StreamContext(connection, NoTokens(), None, section, resource=resource)

    page = Resource("https://pages.loopback.test/" + "p" * 80, "A Page")
    other = Resource("https://pages.loopback.test/" + "q" * 80, "Another Page")
    mine, theirs = (
        guard.buckets(settings, spec, context("c1", page)),
        guard.buckets(settings, spec, context("c2", page)),
    )
    assert mine.app.key == f"loopback_books:app:{urlsplit(books.provider.url).netloc}"
    assert mine.resource is not None and theirs.resource is not None
    assert mine.resource.key == theirs.resource.key, "one Page's quota, whichever connection reads it"
    assert mine.connection.key != theirs.connection.key
    separate = guard.buckets(settings, spec, context("c1", other)).resource
    assert separate is not None and separate.key != mine.resource.key
    assert guard.buckets(settings, spec, context("c1")).resource is None, "a listing is not one resource's call"

    google = guard.buckets(settings, contacts, context("c1", of=contacts))
    assert google.app.key == f"google_contacts:app:{books.hub.client_id}", "by default, the OAuth client"
    assert google.resource is None
