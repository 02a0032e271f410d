"""A sandbox's provider state kept in a file (`--state-file`), so a restarted sandbox still knows its grants."""

from __future__ import annotations

import os
import pickle
import sys
from dataclasses import dataclass
from pathlib import Path

from starlette.types import ASGIApp, Receive, Scope, Send

from sandbox.state import SandboxState

# Bump when a class held in the state changes shape: a file of another version is set aside, not loaded.
FORMAT_VERSION = 3
READ_ONLY_METHODS = frozenset({"GET", "HEAD"})
ADMIN_PREFIX = "/_sandbox/"


@dataclass(frozen=True)
class StateFile:
    """Pickled, because grants and their tokens share objects; the file is the user's own, mode 600."""

    path: Path

    def load(self) -> SandboxState | None:
        """The saved state, or None when there is none or it cannot be read (a note says why on stderr)."""
        try:
            version, state = pickle.loads(self.path.read_bytes())  # noqa: S301 - our own file, written by save()
        except FileNotFoundError:
            return None
        except Exception as exc:
            return self.set_aside(f"it could not be read ({exc!r})")
        if version != FORMAT_VERSION or not isinstance(state, SandboxState):
            return self.set_aside(f"it holds format {version}, not {FORMAT_VERSION}")
        return state

    def set_aside(self, why: str) -> None:
        self.path.replace(self.path.with_name(self.path.name + ".old"))
        sys.stderr.write(f"sandbox: {self.path} was set aside as .old because {why}; starting from the seed\n")

    def save(self, state: SandboxState) -> None:
        """Write the whole state to a new file and rename it over the old one, so a crash never leaves half."""
        partial = self.path.with_name(self.path.name + ".partial")
        with os.fdopen(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as out:
            out.write(pickle.dumps((FORMAT_VERSION, state), protocol=pickle.HIGHEST_PROTOCOL))
        partial.replace(self.path)


class SaveAfterEachRequest:
    """Saves the app's sandbox state after every request that may have changed it (all but admin reads).

    Every route is `async`, so requests run one at a time on the event loop and a save sees no half-made change.
    """

    def __init__(self, app: ASGIApp, state: SandboxState, file: StateFile) -> None:
        self.app, self.state, self.file = app, state, file

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self.app(scope, receive, send)
        finally:
            if scope["type"] == "http" and not self.read_only(scope):
                self.file.save(self.state)

    @staticmethod
    def read_only(scope: Scope) -> bool:
        return scope["method"] in READ_ONLY_METHODS and str(scope["path"]).startswith(ADMIN_PREFIX)
