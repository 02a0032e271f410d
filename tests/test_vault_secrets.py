"""Named secrets (an app password, a Page token): sealed beside OAuth grants, bound to their row and name, read
through the credentials a stream gets, never refreshed, and erased at disconnect."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import httpx
import pytest
from sqlalchemy import select, text, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from core.db import transaction
from core.errors import AuthRevoked, SecretMissing
from core.models import Connection, ConnectionStatus
from core.redis import redis_client
from core.settings import Settings
from sync.runtime import Runtime
from sync.wiring import build_engine
from tests.google.test_tokens import encodings
from token_vault.credentials import ConnectionCredentials
from token_vault.fresh import FreshTokens, Inactive
from token_vault.models import SealedCredential
from token_vault.sealing import SealError
from token_vault.vault import secret_kind

PASSWORD = "abcd-efgh-ijkl-mnop"
PAGE = "page:" + "1" * 40  # a Page id far longer than any Meta issues today
PAGE_TOKEN = "EAAGm0PX4ZCpsBAPageTokenOfATestPage"


@pytest.fixture(scope="module")
def fresh(settings: Settings, engine: Engine, sessions: sessionmaker[Session]) -> Iterator[FreshTokens]:
    """The vault's fresh tokens as a worker wires them."""
    client = redis_client(settings.redis_url)
    yield build_engine(Runtime(settings, engine, sessions, client)).fresh
    client.close()


@pytest.fixture
def connect(sessions: sessionmaker[Session], fresh: FreshTokens) -> Callable[..., ConnectionCredentials]:
    def make(user: str = "u-secrets") -> ConnectionCredentials:
        with transaction(sessions) as session:
            connection = Connection(
                workspace_id="ws-secrets", user_id=user, auth_provider="google", provider_account_id=uuid.uuid4().hex
            )
            session.add(connection)
        return ConnectionCredentials(fresh, connection.id)

    return make


def rows(sessions: sessionmaker[Session], connection_id: uuid.UUID) -> dict[str, SealedCredential]:
    with sessions() as session:
        found = session.scalars(select(SealedCredential).where(SealedCredential.connection_id == connection_id))
        return {row.kind: row for row in found}


def table_text(sessions: sessionmaker[Session]) -> str:
    """Every row of the credentials table as PostgreSQL renders it (bytea as hex)."""
    with sessions() as session:
        return "\n".join(session.scalars(text("select c::text from credentials c")))


def test_a_named_secret_is_sealed_read_back_replaced_and_never_stored_in_plaintext(
    sessions: sessionmaker[Session], connect: Callable[..., ConnectionCredentials]
) -> None:
    credentials = connect()
    credentials.keep("password", "an-older-password")
    credentials.keep("password", PASSWORD)
    credentials.keep(PAGE, PAGE_TOKEN)

    assert credentials.secret("password") == PASSWORD
    assert credentials.secret(PAGE) == PAGE_TOKEN
    stored = rows(sessions, credentials.connection_id)
    assert sorted(stored) == sorted([secret_kind("password"), secret_kind(PAGE)])
    assert all(row.expires_at is None for row in stored.values()), "a secret never expires"
    assert stored[secret_kind("password")].version == 2, "kept twice: one row, replaced in place"
    dump = table_text(sessions)
    assert str(credentials.connection_id) in dump, "the scan sees the rows"
    leaks = [secret[:4] for secret in (PASSWORD, PAGE_TOKEN) for form in encodings(secret) if form in dump]
    assert leaks == []


def test_a_named_secret_opens_only_in_its_own_row_under_its_own_name(
    sessions: sessionmaker[Session], connect: Callable[..., ConnectionCredentials]
) -> None:
    mine, theirs = connect(), connect(user="u-other")
    mine.keep("password", PASSWORD)
    theirs.keep("password", "their-password")
    mine.keep(PAGE, PAGE_TOKEN)
    sealed = rows(sessions, mine.connection_id)[secret_kind("password")].sealed

    def plant(credentials: ConnectionCredentials, kind: str) -> None:
        with transaction(sessions) as session:
            session.execute(
                update(SealedCredential)
                .where(SealedCredential.connection_id == credentials.connection_id, SealedCredential.kind == kind)
                .values(sealed=sealed)
            )

    plant(theirs, secret_kind("password"))
    plant(mine, secret_kind(PAGE))
    with pytest.raises(SealError):
        theirs.secret("password")
    with pytest.raises(SealError):
        mine.secret(PAGE)
    assert mine.secret("password") == PASSWORD


def test_a_missing_secret_names_itself_and_calls_for_reconnecting(
    connect: Callable[..., ConnectionCredentials],
) -> None:
    credentials = connect()
    credentials.keep("password", PASSWORD)
    with pytest.raises(SecretMissing, match="'page:42'") as missing:
        credentials.secret("page:42")
    assert isinstance(missing.value, AuthRevoked) and missing.value.name == "page:42"
    with pytest.raises(ValueError, match="printable characters"):
        credentials.keep("two words", "x")
    with pytest.raises(ValueError, match="printable characters"):
        credentials.secret("x" * 100)


@pytest.mark.parametrize(
    ("status", "refused"),
    [(ConnectionStatus.PAUSED, Inactive), (ConnectionStatus.NEEDS_REAUTH, AuthRevoked)],
)
def test_a_connection_that_may_not_call_its_provider_gets_no_secret_and_keeps_none(
    sessions: sessionmaker[Session],
    connect: Callable[..., ConnectionCredentials],
    status: ConnectionStatus,
    refused: type[Exception],
) -> None:
    credentials = connect()
    credentials.keep("password", PASSWORD)
    with transaction(sessions) as session:
        session.get_one(Connection, credentials.connection_id).move_to(status, "set by the test")
    with pytest.raises(refused):
        credentials.secret("password")
    with pytest.raises(refused):
        credentials.keep("password", "a-newer-password")
    assert rows(sessions, credentials.connection_id)[secret_kind("password")].version == 1


def test_disconnect_erases_named_secrets(
    live_api: str,
    user_token: Callable[..., str],
    sessions: sessionmaker[Session],
    connect: Callable[..., ConnectionCredentials],
) -> None:
    credentials = connect(user="u-leaving")
    credentials.keep("password", PASSWORD)
    credentials.keep(PAGE, PAGE_TOKEN)
    assert len(rows(sessions, credentials.connection_id)) == 2
    answer = httpx.delete(
        f"{live_api}/api/v1/connections/{credentials.connection_id}",
        headers={"authorization": f"Bearer {user_token(user_id='u-leaving', workspace_id='ws-secrets')}"},
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "disconnected"
    assert rows(sessions, credentials.connection_id) == {}
    with pytest.raises(Inactive):
        credentials.secret("password")
    with pytest.raises(Inactive):
        credentials.keep("password", PASSWORD)
    assert rows(sessions, credentials.connection_id) == {}, "nothing is written again after an erase"
