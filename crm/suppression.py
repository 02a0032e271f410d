"""The workspace suppression list: forgotten people's addresses, kept only as keyed hashes, and the one check each
sink makes at write time so the next sync does not bring them back.

A hash is HMAC-SHA256 of the trimmed, lower-cased address under a key outside the database
(`SYNCHUB_PRIVACY__HASH_KEY`, or one derived from each vault key): a copy of the database alone does not let anyone
test addresses against the list. The process learns its keys once (`configure`, from the wiring that builds the
sync engine); a workspace with an empty list costs one indexed EXISTS per page and needs no key.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import TypeVar

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import LargeBinary, SmallInteger, String, UniqueConstraint, Uuid, exists, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Mapped, Session, mapped_column

from core.db import Base
from core.holdings import Owner, Role, holding
from core.models import PRINCIPAL_ID_LENGTH, UTCDateTime, utcnow
from core.settings import Settings

R = TypeVar("R")
OWN_KEY_ID = 0
"""The key id of hashes made under SYNCHUB_PRIVACY__HASH_KEY (vault key ids are 1-255)."""
_keys: dict[int, bytes] = {}
_active: int | None = None


class SuppressionRow(Base):
    """One forgotten address of a workspace, as a keyed hash (never the address)."""

    __tablename__ = "privacy_suppressions"
    __table_args__ = (
        UniqueConstraint("workspace_id", "key_id", "digest"),
        holding(Owner.WORKSPACE, Role.SECRET, key="workspace_id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    workspace_id: Mapped[str] = mapped_column(String(PRINCIPAL_ID_LENGTH))
    key_id: Mapped[int] = mapped_column(SmallInteger)
    digest: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class NoHashKey(Exception):
    """The process was not told its hash keys (`configure`) and a workspace has a suppression list to check."""


def hash_keys(settings: Settings) -> tuple[dict[int, bytes], int]:
    """The keys hashes are checked under, and the id of the one new hashes are made with."""
    own = settings.privacy.hash_key
    if own is not None:
        return {OWN_KEY_ID: own.get_secret_value().encode()}, OWN_KEY_ID
    derived = {
        key_id: HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"synchub privacy hash").derive(key)
        for key_id, key in settings.vault.ring().items()
    }
    return derived, settings.vault.active_key_id


def configure(settings: Settings) -> None:
    global _active
    keys, active = hash_keys(settings)
    _keys.clear()
    _keys.update(keys)
    _active = active


def normalised(email: str) -> str:
    return email.strip().lower()


def _digest(key: bytes, value: str) -> bytes:
    return hmac.new(key, value.encode(), hashlib.sha256).digest()


def keyed(value: str) -> tuple[int, bytes]:
    """The hash new entries get: (key id, digest)."""
    if _active is None:
        raise NoHashKey("the process's hash keys are not configured")
    return _active, _digest(_keys[_active], value)


def keyed_hex(value: str, length: int = 24) -> str:
    """A short keyed hash to name someone in the audit log without naming them."""
    key_id, digest = keyed(value)
    return f"{key_id}:{digest.hex()[:length]}"


def suppress(session: Session, workspace_id: str, email: str) -> bool:
    """Put an address on the workspace's list (in the caller's transaction); False if it was there already."""
    address = normalised(email)
    if address in suppressed(session, workspace_id, [address]):
        return False
    key_id, digest = keyed(address)
    statement = insert(SuppressionRow).values(
        id=uuid.uuid4(), workspace_id=workspace_id, key_id=key_id, digest=digest, created_at=utcnow()
    )
    session.execute(statement.on_conflict_do_nothing())
    return True


def suppressed(session: Session, workspace_id: str, addresses: Iterable[str]) -> set[str]:
    """Which of `addresses` (any case) are on the workspace's suppression list, in the form given."""
    given = {address for address in addresses if address and address.strip()}
    if not given:
        return set()
    listed = select(SuppressionRow.id).where(SuppressionRow.workspace_id == workspace_id)
    if not session.scalar(select(exists(listed))):
        return set()
    if not _keys:
        raise NoHashKey("a workspace has a suppression list and the process's hash keys are not configured")
    by_digest = {
        (key_id, _digest(key, normalised(address))): address for address in given for key_id, key in _keys.items()
    }
    found = session.execute(
        select(SuppressionRow.key_id, SuppressionRow.digest).where(
            SuppressionRow.workspace_id == workspace_id,
            SuppressionRow.digest.in_([digest for _, digest in by_digest]),
        )
    ).all()
    return {by_digest[(key_id, bytes(digest))] for key_id, digest in found if (key_id, bytes(digest)) in by_digest}


def without_suppressed(
    session: Session, workspace_id: str, records: Sequence[R], addresses_of: Callable[[R], Iterable[str]]
) -> tuple[list[R], int]:
    """The write-time check of a sink: the records that carry no suppressed address, and how many were skipped."""
    blocked = suppressed(session, workspace_id, (a for record in records for a in addresses_of(record)))
    if not blocked:
        return list(records), 0
    blocked = {normalised(address) for address in blocked}
    kept = [r for r in records if not {normalised(a) for a in addresses_of(r) if a} & blocked]
    return kept, len(records) - len(kept)


def like_pattern(address: str) -> str:
    """A LIKE pattern that finds `address` anywhere in a text (its wildcards escaped)."""
    return "%" + address.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def text_pattern(address: str) -> str:
    """A PostgreSQL regular expression that matches `address` literally."""
    import re

    return re.sub(r"([\\.^$|?*+()\[\]{}-])", r"\\\1", address)


def forget_person(session: Session, workspace_id: str, email: str) -> dict[str, int]:
    """Delete a person, named by address, from every synced record of the workspace (in the caller's
    transaction): each record kind forgets them in its own way (`RecordKind.forget`). Rows touched, by what."""
    from crm.kinds import kinds

    address = normalised(email)
    touched: dict[str, int] = {}
    for kind in kinds().values():
        if kind.forget is not None:
            touched.update(kind.forget(session, workspace_id, address))
    return touched
