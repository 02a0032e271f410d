"""Settings from the environment (prefix SYNCHUB_, nested with __), validated before anything runs.

Core's own settings are the `Settings` model. A connector or an auth provider declares its own model, read from
`SYNCHUB_<NAME>__*` by `section()` out of the same snapshot of the environment, with the same one-line errors;
so core names no provider.
"""

from __future__ import annotations

import base64
import binascii
import os
from functools import lru_cache
from ipaddress import IPv4Network, IPv6Network, ip_network
from typing import Annotated, Any, ClassVar, Literal, TypeVar, cast
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, Field, PrivateAttr, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

ENV_PREFIX = "SYNCHUB_"
NESTED = "__"


class ConfigError(Exception):
    """A setting is missing or malformed; the message names the variable, one line per problem."""


def http_url(value: str) -> str:
    """The URL without a trailing slash, its scheme and host lower-cased (`HTTPS://Sync.Example` is https)."""
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http(s) URL with a host")
    netloc = parts.netloc.rpartition("@")
    host = netloc[0] + netloc[1] + netloc[2].lower()
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment)).rstrip("/")


def normalise_database_url(value: str) -> str:
    """Accept the usual spellings and route PostgreSQL to the psycopg 3 driver."""
    for prefix in ("postgres://", "postgresql://", "postgresql+psycopg2://"):
        if value.startswith(prefix):
            return "postgresql+psycopg://" + value[len(prefix) :]
    if value.startswith("postgresql+psycopg://"):
        return value
    raise ValueError("must be a postgresql:// URL")


class VaultSettings(BaseModel):
    keys: SecretStr = Field(description="Key ring: `id:base64key,...`, ids 1-255, 32-byte AES-256 keys.")
    active_key_id: int = Field(ge=1, le=255, description="The key id new credentials are sealed with.")
    refresh_margin_seconds: int = Field(default=300, ge=0, description="A token closer than this to expiry is renewed.")
    refresh_lock_seconds: float = Field(
        default=30.0, ge=1, description="TTL of a connection's refresh lock; a dead holder's lock expires after it."
    )
    refresh_tick_seconds: float = Field(default=300.0, gt=0, description="Beat period of the background refresh.")
    refresh_ahead_seconds: int = Field(default=900, ge=0, description="Background refresh renews tokens this close.")
    touch_idle_hours: float = Field(default=24.0, gt=0, description="Refresh idle connections at least this often.")
    refresh_cooldown_seconds: float = Field(default=60.0, gt=0, description="First wait after a failed refresh.")
    refresh_cooldown_max_seconds: float = Field(default=3600.0, gt=0, description="Longest wait between failures.")

    @field_validator("keys")
    @classmethod
    def _parse_keys(cls, value: SecretStr) -> SecretStr:
        parse_key_ring(value.get_secret_value())
        return value

    @model_validator(mode="after")
    def _active_in_ring(self) -> VaultSettings:
        if self.active_key_id not in self.ring():
            raise ValueError(f"active_key_id {self.active_key_id} is not in the key ring")
        return self

    def ring(self) -> dict[int, bytes]:
        return parse_key_ring(self.keys.get_secret_value())


def parse_key_ring(text: str) -> dict[int, bytes]:
    ring: dict[int, bytes] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key_id_text, sep, encoded = item.partition(":")
        if not sep or not key_id_text.isdigit() or not 1 <= int(key_id_text) <= 255:
            raise ValueError("each key must be `id:base64key` with an id from 1 to 255")
        try:
            key = base64.b64decode(encoded, validate=True)
        except binascii.Error as exc:
            raise ValueError(f"key {key_id_text} is not valid base64") from exc
        if len(key) != 32:
            raise ValueError(f"key {key_id_text} must decode to 32 bytes, not {len(key)}")
        if int(key_id_text) in ring:
            raise ValueError(f"key id {key_id_text} appears twice")
        ring[int(key_id_text)] = key
    if not ring:
        raise ValueError("the key ring is empty")
    return ring


KEY_MARKERS = ("-----BEGIN ", "ssh-rsa ", "ssh-ed25519 ", "ecdsa-sha2-", "sk-ssh-", "sk-ecdsa-")


def looks_like_a_key(secret: str) -> bool:
    """A PEM block or an OpenSSH public key: PyJWT refuses the same as HMAC secrets."""
    text = secret.strip()
    return "-----BEGIN " in text or text.startswith(KEY_MARKERS)


class IdentitySettings(BaseModel):
    jwt_algorithm: Literal["HS256", "RS256"] = "HS256"
    jwt_secret: SecretStr | None = Field(default=None, description="Shared secret for HS256 (32+ chars).")
    jwt_public_key: str | None = Field(default=None, description="PEM public key for RS256.")
    audience: str = "synchub"
    cookie_name: str = "synchub_session"
    session_hours: float = Field(default=12, gt=0, le=24 * 30, description="Lifetime of a browser's session.")
    dev_signin: bool = Field(
        default=False,
        description="Serve /dev/sign-in, which signs anyone in as the demo user; honoured only with HS256 and a "
        "loopback public URL (`synchub dev` turns it on).",
    )

    missing_hint: ClassVar[str] = (
        "is not configured: set SYNCHUB_IDENTITY__JWT_SECRET (HS256), or SYNCHUB_IDENTITY__JWT_ALGORITHM=RS256 "
        "and SYNCHUB_IDENTITY__JWT_PUBLIC_KEY"
    )

    @model_validator(mode="after")
    def _key_for_algorithm(self) -> IdentitySettings:
        if self.jwt_algorithm == "HS256":
            secret = self.jwt_secret.get_secret_value() if self.jwt_secret else ""
            if len(secret) < 32:
                raise ValueError("jwt_secret must be set to at least 32 characters for HS256")
            if looks_like_a_key(secret):
                raise ValueError(
                    "jwt_secret is a public or private key, not a shared secret: anyone holding the public key "
                    "could sign tokens; for the CRM's key pair set SYNCHUB_IDENTITY__JWT_ALGORITHM=RS256 and "
                    "SYNCHUB_IDENTITY__JWT_PUBLIC_KEY"
                )
        elif not (self.jwt_public_key and "BEGIN PUBLIC KEY" in self.jwt_public_key):
            raise ValueError("jwt_public_key must be a PEM public key for RS256")
        return self


class CelerySettings(BaseModel):
    task_time_limit: int = Field(default=120, ge=5, description="Hard limit of one task, seconds.")
    task_soft_time_limit: int = Field(default=100, ge=1)
    max_countdown: int = Field(default=600, ge=1, description="Longest retry countdown, seconds.")
    visibility_timeout: int = Field(default=3600, ge=10, description="Redis redelivery delay, seconds.")
    unacked_restore_interval: int = Field(default=30, ge=1, description="Seconds between scans for lost messages.")
    unacked_restore_throttle: int = Field(default=10, ge=1, description="Scan Redis on every Nth interval.")
    sync_time_budget: float = Field(default=30.0, gt=0, description="Seconds a sync task works before re-enqueuing.")
    retry_base_seconds: float = Field(default=5.0, gt=0, description="First countdown after a failed attempt.")
    run_lock_seconds: float = Field(
        default=30.0, ge=0.3, description="Life of a run's lock, renewed every third of it while its worker lives."
    )
    broker_reconnect_seconds: float = Field(
        default=1.0, gt=0, le=60, description="Seconds between a worker's attempts to reach a lost broker."
    )

    @model_validator(mode="after")
    def _redelivery_after_longest_task(self) -> CelerySettings:
        if self.task_soft_time_limit >= self.task_time_limit:
            raise ValueError("task_soft_time_limit must be below task_time_limit")
        if self.sync_time_budget >= self.task_soft_time_limit:
            raise ValueError("sync_time_budget must be below task_soft_time_limit")
        longest = self.task_time_limit + self.max_countdown
        if self.visibility_timeout <= longest:
            raise ValueError(
                f"visibility_timeout ({self.visibility_timeout}s) must exceed task_time_limit plus "
                f"max_countdown ({longest}s), or a healthy task is delivered twice"
            )
        if self.run_lock_seconds >= self.visibility_timeout - self.task_time_limit:
            raise ValueError(
                f"run_lock_seconds ({self.run_lock_seconds:g}s) must be below visibility_timeout minus "
                f"task_time_limit ({self.visibility_timeout - self.task_time_limit}s), so a killed worker's run "
                "lock has expired before its message is delivered again"
            )
        return self


class ScheduleSettings(BaseModel):
    tick_seconds: float = Field(default=30.0, gt=0, description="Beat period that starts due runs.")
    heartbeat_timeout_seconds: float = Field(
        default=3600.0, gt=0, description="A running run whose heartbeat is older is re-queued by the watchdog."
    )
    jitter: float = Field(default=0.1, ge=0, le=0.5, description="Share of the poll interval added at random.")
    max_attempts: int = Field(default=8, ge=1, description="Attempts of one run before it fails.")
    failure_backoff_seconds: float = Field(
        default=60.0, gt=0, description="After a failed run the next poll waits this, doubling, up to the interval."
    )


class HttpSettings(BaseModel):
    max_body_bytes: int = Field(
        default=1024 * 1024, ge=1024, description="Largest request body the API and pages accept; 413 above it."
    )


class MetricsSettings(BaseModel):
    token: SecretStr | None = Field(
        default=None,
        min_length=24,
        description="Bearer token Prometheus sends to the API's /metrics; unset, /metrics answers 404.",
    )


class WebhookSettings(BaseModel):
    """The inbox of webhook deliveries: how long payloads stay, how often a delivery is tried, and the sweeper."""

    retention_days: int = Field(default=7, ge=1, description="Days a finished delivery's payload is kept.")
    max_attempts: int = Field(default=8, ge=1, description="Attempts of one delivery before it is marked failed.")
    claim_seconds: float = Field(
        default=120.0, gt=0, description="How long a worker holds a delivery it claimed; then another may take it."
    )
    sweep_seconds: float = Field(default=30.0, gt=0, description="Beat period of the sweeper.")
    grace_seconds: float = Field(
        default=10.0, gt=0, description="A pending delivery older than this, never claimed, is sent again."
    )


class PrivacySettings(BaseModel):
    """The CRM's own calls that act for a whole workspace (cancel it, forget a person, read its audit log)."""

    service_token: SecretStr | None = Field(
        default=None,
        min_length=24,
        description="Bearer token the CRM's backend sends for workspace-wide privacy calls; unset, they answer 404. "
        "Never a user's token.",
    )
    hash_key: SecretStr | None = Field(
        default=None,
        min_length=32,
        description="Key of the keyed hashes (HMAC-SHA256) kept instead of a forgotten person's address and an "
        "erased user's id; unset, derived from each key of SYNCHUB_VAULT__KEYS (a hash made under a key that later "
        "leaves the ring then no longer matches: set this to keep suppressions across vault key retirements).",
    )
    undo_sweep_seconds: float = Field(
        default=60.0, gt=0, description="Beat period of the retry of provider undo's an erase still owes."
    )
    undo_retry_base_seconds: float = Field(
        default=30.0, gt=0, description="First wait before an owed revoke or unsubscribe is tried again; doubles."
    )
    undo_retry_max_seconds: float = Field(
        default=6 * 3600.0, gt=0, description="Longest wait between two tries of an owed provider undo."
    )


MIN_POLL_SECONDS, MAX_POLL_SECONDS = 300, 86400


class RequestLimitSettings(BaseModel):
    """Limits of `/session`, connect starts and sync-now, each its own token bucket per user and per address."""

    per_user_per_minute: float = Field(default=30, gt=0, description="Requests a user's bucket refills per minute.")
    user_burst: int = Field(default=10, ge=1, description="Requests a user may make at once.")
    per_address_per_minute: float = Field(default=300, gt=0, description="Refill of a client address's bucket.")
    address_burst: int = Field(default=60, ge=1, description="Requests one client address may make at once.")


def parse_networks(values: list[str]) -> list[IPv4Network | IPv6Network]:
    try:
        return [ip_network(value, strict=False) for value in values]
    except ValueError as exc:
        raise ValueError(f"must be IP addresses or networks, comma-separated ({exc})") from None


CsvList = Annotated[list[str], NoDecode]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter=NESTED, extra="ignore", case_sensitive=False
    )

    database_url: str = Field(description="postgresql://... (psycopg 3); `synchub dev` runs its own.")
    redis_url: str = Field(description="redis://host:port/db used for Celery, locks, state and limits.")
    public_url: str = Field(description="Where browsers reach the hub; OAuth redirect URIs derive from it.")
    vault: VaultSettings
    identity: IdentitySettings
    celery: CelerySettings = CelerySettings()
    schedule: ScheduleSettings = ScheduleSettings()
    http: HttpSettings = HttpSettings()
    connectors: CsvList = Field(default_factory=list, description="Enabled connector slugs, comma-separated.")
    retention_days: int = Field(
        default=90,
        ge=1,
        description="Days data is kept after a disconnect, and after a workspace is cancelled.",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "text"] = Field(
        default="json", description="`json`: one object a line on stderr; `text`: the same fields for a person reading."
    )
    trusted_proxies: CsvList = Field(
        default_factory=list,
        description="Addresses or networks of the reverse proxies in front of the API, comma-separated; only their "
        "X-Forwarded-For is believed. Empty: the client is the socket's peer.",
    )
    request_limits: RequestLimitSettings = RequestLimitSettings()
    metrics: MetricsSettings = MetricsSettings()
    webhooks: WebhookSettings = WebhookSettings()
    privacy: PrivacySettings = PrivacySettings()

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _proxies(cls, value: Any) -> Any:
        values = [item.strip() for item in value.split(",") if item.strip()] if isinstance(value, str) else value
        parse_networks(values)
        return values

    def trusted_networks(self) -> list[IPv4Network | IPv6Network]:
        return parse_networks(self.trusted_proxies)

    _environ: dict[str, str] = PrivateAttr(default_factory=dict)
    _sections: dict[tuple[str, type[BaseModel]], BaseModel | None] = PrivateAttr(default_factory=dict)

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        return normalise_database_url(value)

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("redis", "rediss", "unix") or not (parts.hostname or parts.path):
            raise ValueError("must be a redis:// URL")
        return value

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str) -> str:
        return http_url(value)

    @field_validator("connectors", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value


def env_name(location: tuple[int | str, ...], prefix: str = ENV_PREFIX) -> str:
    """The environment variable a validation error location refers to."""
    parts = [str(part) for part in location if not isinstance(part, int)]
    return prefix + NESTED.join(part.upper() for part in parts)


def _section(location: tuple[int | str, ...], root: type[BaseModel]) -> type[BaseModel] | None:
    """The nested settings model at `location`, if that location names one."""
    model: type[BaseModel] = root
    for part in location:
        field = model.model_fields.get(str(part))
        annotation = getattr(field, "annotation", None)
        candidates = [annotation, *getattr(annotation, "__args__", ())]
        nested = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
        if nested is None:
            return None
        model = nested
    return model


def _lines_for(
    location: tuple[int | str, ...], kind: str, message: str, root: type[BaseModel], prefix: str
) -> list[str]:
    def name(at: tuple[int | str, ...]) -> str:
        return env_name(at, prefix)

    section = _section(location, root)
    if section is None:
        return [f"{name(location)} {'is not set' if kind == 'missing' else message}"]
    if kind == "missing":
        required = [field for field, info in section.model_fields.items() if info.is_required()]
        hint = getattr(section, "missing_hint", None)
        return [f"{name((*location, field))} is not set" for field in required] or [f"{name(location)} {hint}"]
    field_name, _, rest = message.partition(" ")
    if field_name in section.model_fields:
        return [f"{name((*location, field_name))} {rest}"]
    return [f"{name(location)} {message}"]


def explain(error: ValidationError, root: type[BaseModel] = Settings, prefix: str = ENV_PREFIX) -> list[str]:
    """One line per bad variable, naming it as it is spelled in the environment."""
    lines: dict[str, None] = {}
    for item in error.errors():
        message = str(item["msg"]).removeprefix("Value error, ")
        for line in _lines_for(tuple(item["loc"]), item["type"], message, root, prefix):
            lines.setdefault(line)
    return list(lines)


def load_settings(**overrides: Any) -> Settings:
    """Read and validate the settings, raising ConfigError with one line per bad variable. The SYNCHUB_*
    environment is kept with them, for the sections connectors and auth providers declare."""
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError("\n".join(explain(exc))) from None
    settings._environ = {
        name.upper(): value for name, value in os.environ.items() if name.upper().startswith(ENV_PREFIX)
    }
    return settings


M = TypeVar("M", bound=BaseModel)


def section_variables(settings: Settings, name: str) -> dict[str, Any]:
    """The `SYNCHUB_<NAME>__*` variables of the snapshot, nested by `__` and lower-cased."""
    prefix = f"{ENV_PREFIX}{name.upper()}{NESTED}"
    values: dict[str, Any] = {}
    for variable, value in settings._environ.items():
        if not variable.startswith(prefix):
            continue
        *parents, leaf = variable.removeprefix(prefix).lower().split(NESTED)
        node = values
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return values


def section(settings: Settings, name: str, model: type[M], optional: bool = False) -> M | None:
    """The settings a connector or auth provider declares, read from `SYNCHUB_<NAME>__*` and validated once per
    settings object; None when `optional` and none of its variables is set. Raises ConfigError naming each bad
    variable in one line."""
    key = (name, model)
    if key not in settings._sections:
        values = section_variables(settings, name)
        if optional and not values:
            settings._sections[key] = None
        else:
            try:
                settings._sections[key] = model.model_validate(values)
            except ValidationError as exc:
                raise ConfigError("\n".join(explain(exc, model, f"{ENV_PREFIX}{name.upper()}{NESTED}"))) from None
    return cast("M | None", settings._sections[key])


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()
