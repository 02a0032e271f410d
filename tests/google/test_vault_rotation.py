"""Key rotation: `synchub vault rotate` keeps every newer write; a restart with only the new key opens everything."""

from __future__ import annotations

import base64
import re
import secrets
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass

import httpx
import pytest
import redis
from sqlalchemy import func, select, text, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from core.db import make_engine, session_factory, transaction
from core.models import Connection
from hub.database import scratch_database
from sync import checkpoints
from sync.checkpoints import Position
from sync.models import Checkpoint
from sync.runtime import Runtime
from sync.wiring import build_engine
from tests.conftest import ROOT, Worker, clean_environ, settings_from_env, wait_for
from tests.google.conftest import GoogleHub, new_account
from tests.test_settings import run_cli
from token_vault.fresh import ACCESS, REFRESH, FreshTokens
from token_vault.models import SealedCredential
from token_vault.rotation import BATCH, RotationReport, rotate
from token_vault.sealing import KeyRing, SealError
from token_vault.vault import MissingKeys, Vault, check_key_ids, secret_kind

OLD, NEW = 1, 2
PAGE_SECRET = secret_kind("page:" + "7" * 40)


@pytest.fixture(scope="module")
def hub_env(hub_env: dict[str, str], pg_admin_url: str) -> Iterator[dict[str, str]]:
    """This module's own database: rotation re-seals every row, which must not touch other modules' rows."""
    with scratch_database(pg_admin_url, "synchub_rotation") as url:
        yield {**hub_env, "SYNCHUB_DATABASE_URL": url}


@pytest.fixture(scope="module")
def keys(vault_key: str) -> dict[int, str]:
    """The key every process starts with (id 1, the session's) and the one rotation moves to (id 2)."""
    return {OLD: vault_key, NEW: base64.b64encode(secrets.token_bytes(32)).decode()}


def ring(keys: dict[int, str], *key_ids: int, active: int = NEW) -> KeyRing:
    return KeyRing({key_id: base64.b64decode(keys[key_id]) for key_id in key_ids}, active)


def with_keys(env: dict[str, str], keys: dict[int, str], *key_ids: int, active: int = NEW) -> dict[str, str]:
    return {
        **env,
        "SYNCHUB_VAULT__KEYS": ",".join(f"{key_id}:{keys[key_id]}" for key_id in key_ids),
        "SYNCHUB_VAULT__ACTIVE_KEY_ID": str(active),
    }


@pytest.fixture(scope="module")
def db(hub_env: dict[str, str]) -> Iterator[tuple[Engine, sessionmaker[Session]]]:
    engine = make_engine(settings_from_env(hub_env).database_url)
    yield engine, session_factory(engine)
    engine.dispose()


def make_connection(sessions: sessionmaker[Session], workspace: str = "ws-rotation") -> Connection:
    with transaction(sessions) as session:
        connection = Connection(
            workspace_id=workspace, user_id="u-rotation", auth_provider="google", provider_account_id=uuid.uuid4().hex
        )
        session.add(connection)
    return connection


def waiting_on_lock(engine: Engine, table: str) -> bool:
    """A backend is blocked on a row lock while updating `table` (rotation's compare-and-swap)."""
    with engine.connect() as connection:
        waiting = connection.scalar(
            text(
                "select count(*) from pg_stat_activity where datname = current_database() "
                "and wait_event_type = 'Lock' and query ilike :update"
            ),
            {"update": f"update {table} %"},
        )
    return bool(waiting)


class RotationThread(threading.Thread):
    def __init__(self, sessions: sessionmaker[Session], ring: KeyRing) -> None:
        super().__init__(daemon=True)
        self.sessions, self.ring = sessions, ring
        self.report: RotationReport | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.report = rotate(self.sessions, self.ring)
        except BaseException as exc:
            self.error = exc

    def finish(self) -> RotationReport:
        self.join(timeout=60)
        assert self.error is None, self.error
        assert self.report is not None, "rotate did not finish"
        return self.report


@pytest.mark.parametrize("kind", [ACCESS, PAGE_SECRET], ids=["token", "named-secret"])
@pytest.mark.parametrize("writer_key", [OLD, NEW], ids=["writer-on-old-key", "writer-on-new-key"])
def test_a_credential_written_while_rotate_waits_on_it_keeps_the_newer_value(
    db: tuple[Engine, sessionmaker[Session]], keys: dict[int, str], writer_key: int, kind: str
) -> None:
    engine, sessions = db
    connection = make_connection(sessions)
    with transaction(sessions) as session:
        Vault(ring(keys, OLD, active=OLD)).store(session, connection, kind, "ya29.older")

    with sessions() as holder, holder.begin():
        holder.execute(
            select(SealedCredential)
            .where(SealedCredential.connection_id == connection.id, SealedCredential.kind == kind)
            .with_for_update()
        ).one()
        rotation = RotationThread(sessions, ring(keys, OLD, NEW))
        rotation.start()
        wait_for(lambda: waiting_on_lock(engine, "credentials"), what="rotate to wait on the locked credential")
        Vault(ring(keys, OLD, NEW, active=writer_key)).store(
            holder, holder.get_one(Connection, connection.id), kind, "ya29.newer"
        )
    report = rotation.finish()

    with sessions() as session:
        stored = session.scalars(
            select(SealedCredential).where(
                SealedCredential.connection_id == connection.id, SealedCredential.kind == kind
            )
        ).one()
        secret = Vault(ring(keys, NEW)).read(session, session.get_one(Connection, connection.id), kind)
    assert secret is not None and secret.value == "ya29.newer"
    assert stored.key_id == NEW
    assert report.retried == 1 and report.complete


def test_vault_rotate_reseals_named_secrets_which_stay_bound_to_their_name(
    hub_env: dict[str, str], db: tuple[Engine, sessionmaker[Session]], keys: dict[int, str]
) -> None:
    _, sessions = db
    connection = make_connection(sessions)
    sealed = {secret_kind("password"): "app-password-1", PAGE_SECRET: "page-token-1"}
    with transaction(sessions) as session:
        for kind, value in sealed.items():
            Vault(ring(keys, OLD, active=OLD)).store(session, connection, kind, value)

    rotated = run_cli(["vault", "rotate"], with_keys(hub_env, keys, OLD, NEW))
    assert rotated.returncode == 0, rotated.stderr

    new_only = Vault(ring(keys, NEW))
    with sessions() as session:  # rolled back: the planted swap below must not outlive this test
        stored = session.scalars(select(SealedCredential).where(SealedCredential.connection_id == connection.id))
        assert {row.kind: (row.key_id, row.expires_at) for row in stored} == dict.fromkeys(sealed, (NEW, None))
        mine = session.get_one(Connection, connection.id)
        opened = {kind: new_only.read(session, mine, kind) for kind in sealed}
        assert {kind: secret.value for kind, secret in opened.items() if secret} == sealed
        session.execute(
            update(SealedCredential)
            .where(SealedCredential.connection_id == connection.id, SealedCredential.kind == PAGE_SECRET)
            .values(
                sealed=select(SealedCredential.sealed)
                .where(
                    SealedCredential.connection_id == connection.id, SealedCredential.kind == secret_kind("password")
                )
                .scalar_subquery()
            )
        )
        with pytest.raises(SealError):
            new_only.read(session, mine, PAGE_SECRET)


@pytest.mark.parametrize("writer_key", [OLD, NEW], ids=["writer-on-old-key", "writer-on-new-key"])
def test_a_checkpoint_saved_while_rotate_waits_on_it_keeps_the_newer_cursor(
    db: tuple[Engine, sessionmaker[Session]], keys: dict[int, str], writer_key: int
) -> None:
    engine, sessions = db
    connection = make_connection(sessions)
    with transaction(sessions) as session:
        checkpoints.save(
            session, ring(keys, OLD, active=OLD), connection, "contacts", Position({"sync_token": "older"})
        )

    with sessions() as holder, holder.begin():
        holder.execute(
            select(Checkpoint)
            .where(Checkpoint.connection_id == connection.id, Checkpoint.stream == "contacts")
            .with_for_update()
        ).one()
        rotation = RotationThread(sessions, ring(keys, OLD, NEW))
        rotation.start()
        wait_for(lambda: waiting_on_lock(engine, "checkpoints"), what="rotate to wait on the locked checkpoint")
        checkpoints.save(
            holder,
            ring(keys, OLD, NEW, active=writer_key),
            holder.get_one(Connection, connection.id),
            "contacts",
            Position({"sync_token": "newer"}),
        )
    report = rotation.finish()

    with sessions() as session:
        stored = session.get_one(Checkpoint, (connection.id, "contacts"))
        position = checkpoints.load(session, ring(keys, NEW), session.get_one(Connection, connection.id), "contacts")
    assert position.cursor == {"sync_token": "newer"}
    assert stored.key_id == NEW
    assert report.retried == 1 and report.complete


def test_a_checkpoint_naming_a_key_not_in_the_ring_stops_start_up_and_rotation(
    hub_env: dict[str, str], db: tuple[Engine, sessionmaker[Session]], keys: dict[int, str]
) -> None:
    _, sessions = db
    everywhere = with_keys(hub_env, keys, OLD, NEW)
    stray = KeyRing(
        {**{key_id: base64.b64decode(key) for key_id, key in keys.items()}, 42: secrets.token_bytes(32)}, 42
    )
    connection = make_connection(sessions)
    with transaction(sessions) as session:
        checkpoints.save(session, stray, connection, "contacts", Position({"sync_token": "stray"}))
    try:
        with sessions() as session, pytest.raises(MissingKeys, match=r"key id 42 \(1 checkpoint\)"):
            check_key_ids(session, ring(keys, OLD, NEW))
        started = run_cli(["worker"], everywhere)
        assert started.returncode != 0
        lines = started.stderr.strip().splitlines()
        assert len(lines) == 1, lines
        assert "SYNCHUB_VAULT__KEYS" in lines[0] and "key id 42 (1 checkpoint)" in lines[0]

        rotated = run_cli(["vault", "rotate"], everywhere)
        assert rotated.returncode == 1
        assert "1 checkpoint did not open with the key ring" in rotated.stderr
        with sessions() as session:
            assert session.get_one(Checkpoint, (connection.id, "contacts")).key_id == 42
    finally:
        with transaction(sessions) as session:
            session.delete(session.get_one(Connection, connection.id))


@dataclass(frozen=True)
class Account:
    email: str
    user: str
    connection_id: uuid.UUID


@pytest.fixture(scope="module")
def hub(google_hub_factory: Callable[..., GoogleHub]) -> GoogleHub:
    """The API seals with the old key; it is never restarted, and nothing here needs it to open a credential."""
    return google_hub_factory()


@pytest.fixture(scope="module")
def accounts(hub: GoogleHub, keys: dict[int, str]) -> list[Account]:
    """Three connections made through consent and synced once by a worker that seals with the old key."""
    worker = Worker(with_keys(hub.env, keys, OLD, NEW, active=OLD), queues="sync,maintenance").start()
    made = []
    try:
        for n in range(3):
            email, user = new_account(hub.admin, contacts=5), f"rotating-{n}"
            with closing(hub.browser(user=user)) as browser:
                made.append(Account(email, user, hub.connect(browser, email)))
        for account in made:
            with closing(hub.browser(user=account.user)) as browser:
                assert hub.wait_run(browser, account.connection_id)["status"] == "succeeded"
    finally:
        worker.stop()
    return made


class ForcedRefreshes(threading.Thread):
    """Refreshes one connection again and again, as if the provider kept refusing its access token."""

    def __init__(self, fresh: FreshTokens, connection_id: uuid.UUID) -> None:
        super().__init__(daemon=True)
        self.fresh, self.connection_id = fresh, connection_id
        self.seen: list[str] = []
        self.error: BaseException | None = None
        self.stopping = threading.Event()

    def run(self) -> None:
        try:
            self.seen.append(self.fresh.get(self.connection_id))
            while not self.stopping.is_set():
                self.seen.append(self.fresh.rejected(self.connection_id, self.seen[-1]))
        except BaseException as exc:
            self.error = exc

    @property
    def refreshes(self) -> int:
        return max(0, len(self.seen) - 1)

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=60)


def seal_under_old_key(sessions: sessionmaker[Session], keys: dict[int, str], connection_ids: list[uuid.UUID]) -> None:
    """As before the new key was made active (an earlier test may already have rotated these)."""
    reader, writer = Vault(ring(keys, OLD, NEW)), Vault(ring(keys, OLD, active=OLD))
    with transaction(sessions) as session:
        for connection_id in connection_ids:
            connection = session.get_one(Connection, connection_id)
            for kind in (ACCESS, REFRESH):
                secret = reader.read(session, connection, kind)
                assert secret is not None
                writer.store(session, connection, kind, secret.value, secret.expires_at)


def test_rotation_while_refreshes_are_forced_keeps_the_newest_token_of_every_connection(
    hub: GoogleHub, accounts: list[Account], keys: dict[int, str], db: tuple[Engine, sessionmaker[Session]]
) -> None:
    engine, sessions = db
    seal_under_old_key(sessions, keys, [account.connection_id for account in accounts])
    blocker = make_connection(sessions)
    first_id = uuid.UUID(int=secrets.randbits(64))  # sorts before every uuid4, so rotate reaches it first
    with transaction(sessions) as session:
        Vault(ring(keys, OLD, active=OLD)).store(session, blocker, ACCESS, "ya29.blocker")
        session.execute(
            update(SealedCredential).where(SealedCredential.connection_id == blocker.id).values(id=first_id)
        )
    with sessions() as session:
        to_rotate = session.scalar(select(func.count()).where(SealedCredential.key_id != NEW))
    assert to_rotate is not None and to_rotate <= BATCH, "rotate must read every connection's row before the blocker"

    env = with_keys(hub.env, keys, OLD, NEW)
    client = redis.Redis.from_url(hub.settings.redis_url)
    fresh = build_engine(Runtime(settings_from_env(env), engine, sessions, client)).fresh
    refreshers = [ForcedRefreshes(fresh, account.connection_id) for account in accounts]
    with sessions() as holder, holder.begin():
        holder.execute(select(SealedCredential).where(SealedCredential.id == first_id).with_for_update()).one()
        rotation = subprocess.Popen(
            [sys.executable, "-m", "hub", "vault", "rotate"],
            env=clean_environ(env),
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        wait_for(
            lambda: rotation.poll() is not None or waiting_on_lock(engine, "credentials"),
            what="rotate to read its batch and wait on the first row",
        )
        assert rotation.poll() is None, rotation.communicate()
        for refresher in refreshers:
            refresher.start()
        wait_for(
            lambda: all(r.refreshes >= 2 or r.error for r in refreshers),
            what="every connection to be refreshed twice after rotate read it",
        )
    try:
        out, err = rotation.communicate(timeout=60)
    finally:
        for refresher in refreshers:
            refresher.stop()
        client.close()

    assert rotation.returncode == 0, err
    new_only = Vault(ring(keys, NEW))
    for account, refresher in zip(accounts, refreshers, strict=True):
        assert refresher.error is None, refresher.error
        came_back = len(refresher.seen) - len(set(refresher.seen))
        assert came_back == 0, f"{came_back} replaced access tokens came back"
        with sessions() as session:
            stored = new_only.read(session, session.get_one(Connection, account.connection_id), ACCESS)
        issued = hub.admin.tokens(account=account.email, client_id=hub.client_id, kind="access")
        assert stored is not None and stored.value == issued[-1]["value"] == refresher.seen[-1]
        assert issued[-1]["live"]
        people = httpx.get(
            f"{hub.admin.base_url}/v1/people/me/connections",
            params={"personFields": "names"},
            headers={"authorization": f"Bearer {stored.value}"},
        )
        assert people.status_code == 200
    found = re.search(r"(\d+) retried after a concurrent write", out)
    assert found is not None, out
    assert int(found[1]) >= len(accounts), "every access token was refreshed after rotate read it"


def test_a_restart_with_only_the_new_key_opens_every_credential_and_syncs(
    hub: GoogleHub, accounts: list[Account], keys: dict[int, str], db: tuple[Engine, sessionmaker[Session]]
) -> None:
    _, sessions = db
    rotated = run_cli(["vault", "rotate"], with_keys(hub.env, keys, OLD, NEW))
    assert rotated.returncode == 0, rotated.stderr

    opened = run_cli(["vault", "status"], with_keys(hub.env, keys, NEW))
    assert opened.returncode == 0, opened.stderr
    everything = re.search(
        r"^all (\d+) credentials? and (\d+) checkpoints? open with the key ring$", opened.stdout, re.M
    )
    assert everything is not None, opened.stdout
    credentials, checkpoint_rows = int(everything[1]), int(everything[2])
    assert credentials >= 2 * len(accounts) and checkpoint_rows >= len(accounts)
    assert f"credentials: {credentials} on key id {NEW}\n" in opened.stdout

    refused = run_cli(["vault", "status"], with_keys(hub.env, keys, OLD, active=OLD))
    assert refused.returncode == 1, refused.stdout
    assert (
        f"key id {NEW} ({credentials} credentials, {checkpoint_rows} checkpoints) is not in SYNCHUB_VAULT__KEYS"
        in refused.stderr
    )

    account = accounts[0]
    with sessions() as session:
        assert session.get_one(Checkpoint, (account.connection_id, "contacts")).key_id == NEW
    added = hub.admin.add_contact(account.email, {"names": [{"givenName": "Lise", "familyName": "Meitner"}]})
    worker = Worker(with_keys(hub.env, keys, NEW), queues="sync,maintenance").start()
    try:
        with closing(hub.browser(user=account.user)) as browser:
            mark = hub.log_mark()
            run = hub.sync_now(browser, account.connection_id)
            assert run["status"] == "succeeded", run
            assert run["full_sync"] is False and run["counts"]["created"] == 1
            assert added in {contact["external_id"] for contact in hub.contacts(browser, account.connection_id)}
    finally:
        worker.stop()
    calls = hub.people_calls(account.email, after=mark)
    assert calls and all("syncToken=" in call["query"] for call in calls), "the sync resumed from the rotated cursor"
