"""Credentials are sealed with AES-256-GCM bound to their row, and start-up refuses an incomplete key ring."""

from __future__ import annotations

import base64
import secrets
import uuid

import pytest
from sqlalchemy import select, text
from sqlalchemy.orm import Session, sessionmaker

from core.db import transaction
from core.models import Connection
from core.settings import Settings
from tests.test_settings import run_cli
from token_vault.models import SealedCredential
from token_vault.sealing import KeyRing, SealError, UnknownKeyId
from token_vault.vault import Vault, key_ring


def make_connection(session: Session, workspace: str = "ws-vault", user: str = "u-1") -> Connection:
    connection = Connection(
        workspace_id=workspace, user_id=user, auth_provider="google", provider_account_id=uuid.uuid4().hex
    )
    session.add(connection)
    session.flush()
    return connection


def test_credential_opens_only_in_its_own_row(settings: Settings, sessions: sessionmaker[Session]) -> None:
    vault = Vault(key_ring(settings.vault))
    with transaction(sessions) as session:
        first, second = make_connection(session), make_connection(session)
        vault.store(session, first, "refresh_token", "1//first-refresh")
        vault.store(session, second, "refresh_token", "1//second-refresh")
        first_id, second_id = first.id, second.id

    with transaction(sessions) as session:
        stolen = session.scalar(select(SealedCredential.sealed).where(SealedCredential.connection_id == first_id))
        assert stolen is not None and b"first-refresh" not in stolen
        session.execute(
            text("update credentials set sealed = :sealed where connection_id = :cid"),
            {"sealed": stolen, "cid": second_id},
        )

    with sessions() as session:
        first, second = session.get_one(Connection, first_id), session.get_one(Connection, second_id)
        secret = vault.read(session, first, "refresh_token")
        assert secret is not None and secret.value == "1//first-refresh"
        with pytest.raises(SealError):
            vault.read(session, second, "refresh_token")
        with pytest.raises(SealError):
            vault.ring.open(stolen, vault._binding(first, "access_token"))


def test_tampered_or_unknown_key_blobs_refuse_to_open() -> None:
    old, new = secrets.token_bytes(32), secrets.token_bytes(32)
    from token_vault.sealing import Binding

    binding = Binding("ws", "c1", "refresh_token")
    sealed_with_old = KeyRing({1: old}, 1).seal(b"secret", binding)
    rotated = KeyRing({1: old, 2: new}, 2)
    assert rotated.open(sealed_with_old, binding) == b"secret"
    assert KeyRing.key_id_of(rotated.seal(b"secret", binding)) == 2
    tampered = bytearray(sealed_with_old)
    tampered[-1] ^= 1
    with pytest.raises(SealError):
        rotated.open(bytes(tampered), binding)
    with pytest.raises(UnknownKeyId):
        KeyRing({2: new}, 2).open(sealed_with_old, binding)


def test_startup_refuses_credentials_sealed_with_a_key_not_in_the_ring(
    hub_env: dict[str, str], settings: Settings, sessions: sessionmaker[Session]
) -> None:
    other_key = base64.b64encode(secrets.token_bytes(32)).decode()
    ring = KeyRing({**settings.vault.ring(), 42: base64.b64decode(other_key)}, 42)
    with transaction(sessions) as session:
        connection = make_connection(session, workspace="ws-startup")
        Vault(ring).store(session, connection, "refresh_token", "1//sealed-with-42")
        Vault(ring).store(session, connection, "access_token", "ya29.sealed-with-42")
        connection_id = connection.id
    try:
        for command in (["api", "--port", "0"], ["worker"]):
            result = run_cli(command, hub_env)
            assert result.returncode != 0
            lines = result.stderr.strip().splitlines()
            assert len(lines) == 1, lines
            assert "SYNCHUB_VAULT__KEYS" in lines[0] and "key id 42 (2 credentials)" in lines[0]
    finally:
        with transaction(sessions) as session:
            session.delete(session.get_one(Connection, connection_id))
