"""The loopback provider of the loopback_books connector: address books over real HTTP on 127.0.0.1, with the
subscriptions it was asked for and a log of every request."""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse


@dataclass
class Book:
    id: str
    name: str
    push: bool
    people: list[dict[str, Any]] = field(default_factory=list)
    listed: bool = True
    expired: bool = False
    delay: float = 0.0
    subscribable: bool = True


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    book: str | None
    after: int | None


class BooksProvider:
    """Books by id; ids are long URLs, as CalDAV collections' are. Tests change its state between requests."""

    def __init__(self) -> None:
        self.books: dict[str, Book] = {}
        self.subscriptions: list[tuple[str, str]] = []
        self.calls: list[Call] = []
        self.lock = threading.Lock()
        self.seq = 0
        self.url = ""
        self.failures: list[int] = []
        """Statuses the next `GET /people/{id}` requests answer, one each, before answering normally."""
        self.person_delay = 0.0
        self.app = self._app()

    def reset(self) -> None:
        with self.lock:
            self.books.clear()
            self.subscriptions.clear()
            self.calls.clear()
            self.failures.clear()
            self.person_delay = 0.0

    def add_book(self, name: str, people: int = 0, push: bool = True) -> str:
        book_id = (
            f"https://books.loopback.test/principals/{uuid.uuid4()}/addressbooks/{name.lower().replace(' ', '-')}/"
        )
        with self.lock:
            self.books[book_id] = Book(book_id, name, push)
        self.add_people(book_id, people)
        return book_id

    def add_people(self, book_id: str, count: int) -> None:
        with self.lock:
            book = self.books[book_id]
            for _ in range(count):
                self.seq += 1
                tag = f"{book.name.lower().replace(' ', '-')}-{self.seq}"
                book.people.append({"id": f"people/{tag}", "name": tag, "email": f"{tag}@books.test", "seq": self.seq})

    def person_ids(self, book_id: str, count: int) -> list[str]:
        """Add `count` people to the book and return their ids (a change a webhook then announces)."""
        before = len(self.books[book_id].people)
        self.add_people(book_id, count)
        return [person["id"] for person in self.books[book_id].people[before:]]

    def external_ids(self, book_id: str) -> set[str]:
        return {person["id"] for person in self.books[book_id].people}

    def calls_for(self, book_id: str, path: str = "/people") -> list[Call]:
        with self.lock:
            return [c for c in self.calls if c.book == book_id and c.path == path]

    def _app(self) -> FastAPI:
        app = FastAPI()

        @app.middleware("http")
        async def log(request: Request, call_next: Any) -> Response:
            after = request.query_params.get("after")
            with self.lock:
                self.calls.append(
                    Call(
                        request.method,
                        request.url.path,
                        request.query_params.get("book"),
                        int(after) if after else None,
                    )
                )
            response: Response = await call_next(request)
            return response

        @app.get("/books")
        def list_books() -> dict[str, Any]:
            with self.lock:
                shown = [book for book in self.books.values() if book.listed]
                return {"books": [{"id": b.id, "name": b.name, "push": b.push} for b in shown]}

        @app.post("/subscriptions")
        async def subscribe(request: Request) -> Response:
            book = (await request.json())["book"]
            with self.lock:
                if book not in self.books:
                    return JSONResponse({"error": "no such book"}, status_code=404)
                if not self.books[book].subscribable:
                    return JSONResponse({"error": "not allowed"}, status_code=403)
                self.subscriptions.append(("subscribe", book))
            return Response(status_code=204)

        @app.delete("/subscriptions")
        def unsubscribe(book: str) -> Response:
            with self.lock:
                self.subscriptions.append(("unsubscribe", book))
            return Response(status_code=204)

        @app.get("/people")
        def people(book: str, after: int = 0, limit: int = 2) -> Response:
            with self.lock:
                found = self.books.get(book)
                delay = found.delay if found else 0.0
            time.sleep(delay)
            with self.lock:
                if found is None:
                    return JSONResponse({"error": "no such book"}, status_code=404)
                if after and found.expired:
                    return JSONResponse({"error": "cursor expired"}, status_code=410)
                if not after:
                    found.expired = False
                newer = [p for p in found.people if p["seq"] > after]
                return JSONResponse({"people": newer[:limit], "more": len(newer) > limit})

        @app.get("/people/{person_id:path}")
        def one_person(person_id: str, book: str) -> Response:
            time.sleep(self.person_delay)
            with self.lock:
                if self.failures:
                    status = self.failures.pop(0)
                    return JSONResponse({"error": "injected"}, status_code=status, headers={"retry-after": "0.2"})
                found = self.books.get(book)
                match = [p for p in found.people if p["id"] == person_id] if found else []
                if not match:
                    return JSONResponse({"error": "no such person"}, status_code=404)
                return JSONResponse(match[0])

        return app
