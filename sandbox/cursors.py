"""Opaque page, sync and form tokens shared by the fake providers: base64url JSON with an HMAC, so a tampered or
foreign token is refused."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from typing import Any


class CursorError(ValueError):
    """The token was not issued by this sandbox process, or was altered."""


class Cursors:
    def __init__(self, secret: bytes) -> None:
        self.secret = secret

    def sign(self, data: bytes) -> bytes:
        return hmac.new(self.secret, data, hashlib.sha256).digest()[:12]

    def encode(self, payload: dict[str, Any]) -> str:
        data = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
        return base64.urlsafe_b64encode(self.sign(data) + data).decode().rstrip("=")

    def decode(self, token: str) -> dict[str, Any]:
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (binascii.Error, ValueError):
            raise CursorError(token) from None
        mac, data = raw[:12], raw[12:]
        if not hmac.compare_digest(mac, self.sign(data)):
            raise CursorError(token)
        payload: dict[str, Any] = json.loads(data)
        return payload
