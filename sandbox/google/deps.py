"""FastAPI dependency giving a route the current Google state of its sandbox."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from sandbox.google.state import GoogleState


def google_state(request: Request) -> GoogleState:
    state: GoogleState = request.app.state.sandbox.google
    return state


GoogleDep = Annotated[GoogleState, Depends(google_state)]
