"""AES-256-GCM sealing with a version byte, a key id and associated data binding a ciphertext to its row.

Layout of a sealed blob: ``version (1) | key id (1) | nonce (12) | ciphertext+tag``. The header bytes are
authenticated together with the associated data, so neither can be swapped.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

FORMAT_VERSION = 1
NONCE_BYTES = 12
HEADER_BYTES = 2


class SealError(Exception):
    """A sealed value cannot be opened: unknown key id, wrong row, or tampered bytes."""


class UnknownKeyId(SealError):
    def __init__(self, key_id: int) -> None:
        super().__init__(f"sealed with key id {key_id}, which is not in the key ring")
        self.key_id = key_id


@dataclass(frozen=True)
class Binding:
    """What a credential belongs to; any change makes its ciphertext fail to open."""

    workspace_id: str
    connection_id: str
    kind: str

    def associated_data(self) -> bytes:
        return "\x1f".join(("synchub-credential", self.workspace_id, self.connection_id, self.kind)).encode()


class KeyRing:
    """The AES-256 keys by id, and the one new seals use."""

    def __init__(self, keys: dict[int, bytes], active_key_id: int) -> None:
        if active_key_id not in keys:
            raise ValueError(f"active key id {active_key_id} is not in the ring")
        self._ciphers = {key_id: AESGCM(key) for key_id, key in keys.items()}
        self.active_key_id = active_key_id

    @property
    def key_ids(self) -> frozenset[int]:
        return frozenset(self._ciphers)

    def seal(self, plaintext: bytes, binding: Binding) -> bytes:
        header = bytes((FORMAT_VERSION, self.active_key_id))
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._ciphers[self.active_key_id].encrypt(nonce, plaintext, header + binding.associated_data())
        return header + nonce + sealed

    def open(self, blob: bytes, binding: Binding) -> bytes:
        if len(blob) < HEADER_BYTES + NONCE_BYTES + 16 or blob[0] != FORMAT_VERSION:
            raise SealError("not a sealed value of a known format")
        key_id = blob[1]
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise UnknownKeyId(key_id)
        nonce = blob[HEADER_BYTES : HEADER_BYTES + NONCE_BYTES]
        try:
            return cipher.decrypt(
                nonce, blob[HEADER_BYTES + NONCE_BYTES :], blob[:HEADER_BYTES] + binding.associated_data()
            )
        except InvalidTag as exc:
            raise SealError("the sealed value does not belong to this credential or was altered") from exc

    @staticmethod
    def key_id_of(blob: bytes) -> int:
        return blob[1]
