"""A hub with the loopback_books connector (installed by entry point) enabled beside Google Contacts, its provider
on loopback, and Google sign-in played by the sandbox."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.conftest import LiveServer, Worker
from tests.google.conftest import GoogleHub, admin, google_hub_factory, new_account, sandbox_url
from tests.resources.provider import BooksProvider

__all__ = ["admin", "google_hub_factory", "sandbox_url"]  # the Google hub's fixtures, shared with these tests

CAPABILITY = "books"
VERIFY_TOKEN = "books-verify-token-0123456789"


@dataclass
class BooksHub:
    hub: GoogleHub
    provider: BooksProvider

    def connect(self, user: str = "user-b", workspace: str = "ws-b") -> tuple[httpx.Client, uuid.UUID]:
        browser = self.hub.browser(user=user, workspace=workspace)
        return browser, self.hub.connect(browser, new_account(self.hub.admin, contacts=0), capabilities=CAPABILITY)

    def url(self, connection_id: uuid.UUID, resource_id: str | None = None) -> str:
        path = f"{self.hub.url}/api/v1/connections/{connection_id}/capabilities/{CAPABILITY}/resources"
        return f"{path}/{resource_id}" if resource_id else path

    def resources(self, browser: httpx.Client, connection_id: uuid.UUID) -> dict[str, dict[str, Any]]:
        """The chooser's list by book name (the provider is asked again)."""
        answer = browser.get(self.url(connection_id))
        assert answer.status_code == 200, answer.text
        return {resource["name"]: resource for resource in answer.json()["resources"]}

    def choose(
        self, browser: httpx.Client, connection_id: uuid.UUID, resource_id: str, selected: bool, **extra: Any
    ) -> dict[str, Any]:
        answer = browser.put(self.url(connection_id, resource_id), json={"selected": selected, **extra})
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        return body

    def select(self, browser: httpx.Client, connection_id: uuid.UUID, *names: str) -> dict[str, str]:
        """Select books by name and wait for each one's first run to succeed; returns their resource ids."""
        listed = self.resources(browser, connection_id)
        chosen = {name: listed[name]["id"] for name in names}
        for resource_id in chosen.values():
            run = self.choose(browser, connection_id, resource_id, True)["run"]
            assert run is not None
            assert self.hub.wait_run(browser, connection_id, run)["status"] == "succeeded"
        return chosen

    def external_ids(self, browser: httpx.Client, connection_id: uuid.UUID) -> set[str]:
        return {contact["external_id"] for contact in self.hub.contacts(browser, connection_id)}


def books_env(provider_url: str, **extra: str) -> dict[str, str]:
    return {
        "SYNCHUB_CONNECTORS": "google_contacts,loopback_books",
        "SYNCHUB_LOOPBACK_BOOKS__PROVIDER_URL": provider_url,
        "SYNCHUB_LOOPBACK_BOOKS__VERIFY_TOKEN": VERIFY_TOKEN,
        **extra,
    }


@pytest.fixture(scope="module")
def provider() -> Iterator[BooksProvider]:
    books = BooksProvider()
    with LiveServer(books.app) as server:
        books.url = server.url
        yield books


@pytest.fixture(scope="module")
def books_hub_factory(
    google_hub_factory: Callable[..., GoogleHub], provider: BooksProvider
) -> Iterator[Callable[..., BooksHub]]:
    """A hub and its worker (one per module: a worker takes any hub's runs from the shared queue)."""
    workers: list[Worker] = []

    def start(**extra: str) -> BooksHub:
        hub = google_hub_factory(**books_env(provider.url, **extra))
        workers.append(Worker(hub.env, queues="sync,maintenance", concurrency=1).start())
        return BooksHub(hub, provider)

    yield start
    for worker in workers:
        worker.stop()
