"""Every entry point validates its settings first and names the bad variable in one line."""

from __future__ import annotations

import subprocess
import sys
import tempfile

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from core.settings import ConfigError, load_settings, normalise_database_url
from tests.conftest import clean_environ


def run_cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The CLI with exactly `env`, outside the checkout, where no running dev hub's .synchub/env fills gaps."""
    return subprocess.run(
        [sys.executable, "-m", "hub", *args],
        env=clean_environ(env),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tempfile.gettempdir(),
    )


def without(env: dict[str, str], *names: str) -> dict[str, str]:
    return {name: value for name, value in env.items() if name not in names}


@pytest.mark.parametrize("command", [["worker"], ["api", "--port", "0"], ["beat"]])
def test_unset_vault_keys_stop_the_process_naming_the_variable(hub_env: dict[str, str], command: list[str]) -> None:
    result = run_cli(command, without(hub_env, "SYNCHUB_VAULT__KEYS"))
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == ["synchub: SYNCHUB_VAULT__KEYS is not set"]


@pytest.mark.parametrize(
    ("variable", "value", "complaint"),
    [
        ("SYNCHUB_VAULT__KEYS", "1:not-base64!!", "not valid base64"),
        ("SYNCHUB_VAULT__KEYS", "1:c2hvcnQ=", "must decode to 32 bytes"),
        ("SYNCHUB_VAULT__KEYS", "abc", "id:base64key"),
        ("SYNCHUB_VAULT__ACTIVE_KEY_ID", "7", "not in the key ring"),
        ("SYNCHUB_IDENTITY__JWT_SECRET", "short", "at least 32 characters"),
        ("SYNCHUB_DATABASE_URL", "mysql://x/y", "must be a postgresql:// URL"),
        ("SYNCHUB_DATABASE_URL", "sqlite:////tmp/hub.sqlite", "must be a postgresql:// URL"),
        ("SYNCHUB_PUBLIC_URL", "not a url", "http(s) URL"),
        ("SYNCHUB_CELERY__VISIBILITY_TIMEOUT", "300", "must exceed task_time_limit plus max_countdown"),
        ("SYNCHUB_CELERY__RUN_LOCK_SECONDS", "3480", "must be below visibility_timeout minus task_time_limit"),
        ("SYNCHUB_LOG_FORMAT", "yaml", "'json' or 'text'"),
    ],
)
@pytest.mark.parametrize("command", [["worker"], ["api", "--port", "0"]])
def test_malformed_setting_stops_the_process_naming_it(
    hub_env: dict[str, str], command: list[str], variable: str, value: str, complaint: str
) -> None:
    result = run_cli(command, {**hub_env, variable: value})
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"synchub: {variable} ")
    assert complaint in lines[0]


def test_missing_required_settings_are_all_named(hub_env: dict[str, str]) -> None:
    result = run_cli(["worker"], {})
    assert result.returncode != 0
    named = {line.split()[1] for line in result.stderr.strip().splitlines()}
    assert named == {
        "SYNCHUB_DATABASE_URL",
        "SYNCHUB_REDIS_URL",
        "SYNCHUB_PUBLIC_URL",
        "SYNCHUB_VAULT__KEYS",
        "SYNCHUB_VAULT__ACTIVE_KEY_ID",
        "SYNCHUB_IDENTITY",
    }


def test_postgresql_urls_use_the_psycopg_driver() -> None:
    assert normalise_database_url("postgresql://u:p@h/db") == "postgresql+psycopg://u:p@h/db"
    assert normalise_database_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    with pytest.raises(ValueError, match="postgresql://"):
        normalise_database_url("sqlite:////tmp/x.sqlite")


def test_load_settings_raises_one_line_per_bad_variable(
    hub_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in hub_env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("SYNCHUB_REDIS_URL", "http://nope")
    monkeypatch.setenv("SYNCHUB_RETENTION_DAYS", "0")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert sorted(str(caught.value).splitlines()) == [
        "SYNCHUB_REDIS_URL must be a redis:// URL",
        "SYNCHUB_RETENTION_DAYS Input should be greater than or equal to 1",
    ]


def test_unknown_connector_is_refused_naming_the_variable(hub_env: dict[str, str]) -> None:
    result = run_cli(["worker"], {**hub_env, "SYNCHUB_CONNECTORS": "google_contacts,myspace"})
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("synchub: SYNCHUB_CONNECTORS names unknown connectors")
    assert "myspace" in lines[0]


@pytest.mark.parametrize(
    ("variable", "value", "complaint"),
    [
        ("SYNCHUB_GOOGLE_CONTACTS__PAGE_SIZE", "0", "greater than or equal to 1"),
        ("SYNCHUB_GOOGLE_CONTACTS__POLL_INTERVAL_SECONDS", "60", "greater than or equal to 300"),
        ("SYNCHUB_GOOGLE__BASE_URL", "ftp://sandbox", "http(s) URL"),
        ("SYNCHUB_GOOGLE__CLIENT_ID", "", "at least 1 character"),
    ],
)
def test_a_connectors_or_auth_providers_own_setting_is_checked_at_start(
    hub_env: dict[str, str], variable: str, value: str, complaint: str
) -> None:
    env = {
        **hub_env,
        "SYNCHUB_CONNECTORS": "google_contacts",
        "SYNCHUB_GOOGLE__CLIENT_ID": "client",
        "SYNCHUB_GOOGLE__CLIENT_SECRET": "secret",
        variable: value,
    }
    result = run_cli(["worker"], env)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"synchub: {variable} ") and complaint in lines[0]


def pem_keys() -> dict[str, str]:
    """A key pair in the forms someone might paste where the HS256 secret belongs."""
    private = ec.generate_private_key(ec.SECP256R1())
    public = private.public_key()
    return {
        "public": public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode(),
        "private": private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode(),
        "openssh": public.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode(),
    }


@pytest.mark.parametrize("form", ["public", "private", "openssh"])
@pytest.mark.parametrize("command", [["connections"], ["api", "--port", "0"]])
def test_an_hs256_secret_that_is_a_key_is_refused_at_start(
    hub_env: dict[str, str], command: list[str], form: str
) -> None:
    """A public key as the HMAC secret lets anyone who has the public key sign tokens (algorithm confusion)."""
    result = run_cli(command, {**hub_env, "SYNCHUB_IDENTITY__JWT_SECRET": pem_keys()[form]})
    assert result.returncode != 0, result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("synchub: SYNCHUB_IDENTITY__JWT_SECRET is a public or private key")
