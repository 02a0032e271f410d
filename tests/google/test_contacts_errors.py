"""People API error answers, each classified by the reaction it calls for."""

from __future__ import annotations

from typing import Any

import pytest

from connectors.google_contacts.errors import classify
from core.errors import ConnectorError, CursorExpired, PayloadRejected


def rpc(status: str, message: str, reason: str | None = None) -> dict[str, Any]:
    details = [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason}] if reason else []
    return {"code": 400, "message": message, "status": status, **({"details": details} if details else {})}


EXPIRED = "Sync token is expired. Clear local cache and retry call without the sync token."
ANSWERS = [
    ("expired sync token", rpc("FAILED_PRECONDITION", EXPIRED, "EXPIRED_SYNC_TOKEN"), CursorExpired),
    ("expired, INVALID_ARGUMENT", rpc("INVALID_ARGUMENT", EXPIRED, "EXPIRED_SYNC_TOKEN"), CursorExpired),
    ("unknown sync token", rpc("INVALID_ARGUMENT", "Sync token is invalid."), CursorExpired),
    ("bad field mask", rpc("INVALID_ARGUMENT", "Invalid personFields mask path: 'nope'."), PayloadRejected),
    ("unknown page token", rpc("INVALID_ARGUMENT", "Page token is invalid."), PayloadRejected),
    ("invalid, other status", rpc("FAILED_PRECONDITION", "Sync token is invalid."), PayloadRejected),
    ("invalid, other reason", rpc("INVALID_ARGUMENT", "Sync token is invalid.", "BAD_REQUEST"), PayloadRejected),
]


@pytest.mark.parametrize(("answer", "body", "reaction"), ANSWERS, ids=[a[0] for a in ANSWERS])
def test_a_400_is_an_expired_cursor_only_when_google_says_the_sync_token_is_unusable(
    answer: str, body: dict[str, Any], reaction: type[ConnectorError]
) -> None:
    assert type(classify(400, body, {})) is reaction
