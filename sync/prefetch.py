"""Reading a stream one page ahead: the next page's fetch overlaps the current page's write.

The reader thread fetches a page only when given a permit, so a run that stops (time budget spent, error,
pause) never fetches a page it will not commit: provider calls stay one per committed page.
"""

from __future__ import annotations

import contextvars
import queue
import threading
from collections.abc import Iterator
from typing import Generic, Literal, Protocol, TypeVar

JOIN_SECONDS = 60.0


class Ending(Protocol):
    @property
    def last(self) -> bool: ...


P = TypeVar("P", bound=Ending)


class Prefetch(Generic[P]):
    """Pages (anything that says whether it is the `last`) read one ahead on a thread of their own."""

    def __init__(self, pages: Iterator[P]) -> None:
        self._pages = pages
        self._permits: queue.SimpleQueue[bool] = queue.SimpleQueue()
        self._results: queue.SimpleQueue[
            tuple[Literal["page"], P] | tuple[Literal["end"], None] | tuple[Literal["error"], BaseException]
        ] = queue.SimpleQueue()
        # The reader runs in a copy of this context, so its log lines carry the run's bound ids (core.logs.bind).
        reader = contextvars.copy_context()
        self._thread = threading.Thread(target=reader.run, args=(self._read,), name="synchub-prefetch", daemon=True)
        self._permits.put(True)
        self._thread.start()

    def _read(self) -> None:
        while self._permits.get():
            try:
                page = next(self._pages)
            except StopIteration:
                self._results.put(("end", None))
                return
            except BaseException as exc:
                self._results.put(("error", exc))
                return
            self._results.put(("page", page))

    def next(self, fetch_ahead: bool) -> tuple[P | None, bool]:
        """The next page (None at the end) and whether the one after it is already being fetched."""
        result = self._results.get()
        if result[0] == "error":
            raise result[1]
        if result[0] == "end":
            return None, False
        page = result[1]
        ahead = fetch_ahead and not page.last
        if ahead:
            self._permits.put(True)
        return page, ahead

    def close(self) -> None:
        self._permits.put(False)
        self._thread.join(JOIN_SECONDS)
