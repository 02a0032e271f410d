"""An owed provider undo sealed under a key that has left the vault's ring cannot be opened: beat's retry keeps
it, says why, waits longer each time, and goes on with the others instead of failing on it every sweep."""

from __future__ import annotations

import os
import uuid
from types import SimpleNamespace

from sqlalchemy.orm import Session, sessionmaker

from core.db import transaction
from core.models import utcnow
from core.settings import Settings
from sync.erasure import PendingUndo, Plan, _binding, retry_owed
from token_vault.sealing import KeyRing
from token_vault.vault import key_ring


def test_an_owed_undo_the_ring_cannot_open_is_kept_and_said(
    sessions: sessionmaker[Session], settings: Settings
) -> None:
    retired = KeyRing({9: os.urandom(32)}, 9)
    row_id = uuid.uuid4()
    plan = Plan("ws-retired", str(uuid.uuid4()), "google", "sub-1", refresh="1//gone")
    with transaction(sessions) as session:
        session.add(
            PendingUndo(
                id=row_id, auth_provider="google", key_id=9, sealed=retired.seal(plan.dumps(), _binding(row_id))
            )
        )
    engine = SimpleNamespace(sessions=sessions, settings=settings)
    retry_owed(engine, key_ring(settings.vault), limit=5)
    with sessions() as session:
        row = session.get_one(PendingUndo, row_id)
        assert row.attempts == 1 and row.last_error and row.last_error.startswith("cannot be opened")
        assert row.next_attempt_at > utcnow(), "not tried again at once"
        session.delete(row)
        session.commit()
