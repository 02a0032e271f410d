"""The connector contract: tests every connector's test class inherits in a few lines, django-allauth style.

A connector's test sets `spec`, its settings (`settings_env`, `invalid_settings_env`) and its table of provider
answers (`answers`: payload file name -> status, headers and the error class `classify` must give), and provides a
class-scoped `provider` fixture: its provider as the sandbox plays it over real HTTP (`ProviderSandbox`).

Payloads live in `connectors/<slug>/fixtures/<event>__<variant>.json`, as Zulip names them. Each holds a provider's
answer body exactly as `../shared/providers.md` quotes it; an answer that document does not quote has no payload.
"""

from __future__ import annotations

import base64
import inspect
import json
import re
import secrets
import textwrap
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar, Protocol

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from connectors import registry
from connectors.base import (
    Capability,
    ConnectorSettings,
    ConnectorSpec,
    Credentials,
    Cursor,
    Page,
    Resource,
    StreamContext,
)
from core.errors import AuthRevoked, ConnectorError, CursorExpired, SecretMissing
from core.scopes import allows
from core.settings import MAX_POLL_SECONDS, MIN_POLL_SECONDS, ConfigError, Settings
from crm.kinds import kinds
from oauth.client import OAuthClient
from oauth.config import TokenSet
from oauth.providers import PROVIDERS, configured
from tests.conftest import ROOT, LiveServer, settings_from_env

PROVIDERS_MD = ROOT.parent / "shared" / "providers.md"
PAYLOAD_NAME = re.compile(r"[a-z0-9]+(?:_[a-z0-9]+)*__[a-z0-9]+(?:_[a-z0-9]+)*")
SLUG = re.compile(r"[a-z][a-z0-9_]*")
MAX_PAGES = 100
RECORDS = 5


@dataclass(frozen=True)
class Answer:
    """One provider answer of the table: played over HTTP with the payload file as its body."""

    status: int
    expected: type[ConnectorError]
    headers: Mapping[str, str] = field(default_factory=dict)


class GrantCredentials:
    """Tokens from a real consent, renewed through the OAuth engine when the provider refuses one, and the named
    secrets the provider's sandbox handed over with them.

    The vault does this in the hub; the contract is about the connector, so it needs no database.
    """

    def __init__(self, client: OAuthClient, tokens: TokenSet, secrets: Mapping[str, str] | None = None) -> None:
        self.client, self.tokens, self.secrets = client, tokens, dict(secrets or {})

    def access_token(self) -> str:
        return self.tokens.access_token

    def rejected(self, token: str) -> str:
        kept = self.tokens.refresh_token
        if kept is None:
            raise AuthRevoked("the provider refused a token and the grant has no refresh token")
        renewed = self.client.refresh(kept)
        self.tokens = replace(renewed, refresh_token=renewed.refresh_token or kept)
        return self.tokens.access_token

    def secret(self, name: str) -> str:
        if name not in self.secrets:
            raise SecretMissing(name)
        return self.secrets[name]

    def keep(self, name: str, value: str) -> None:
        self.secrets[name] = value


@dataclass(frozen=True)
class Grant:
    """What the provider granted an account: the scopes it says it granted, and tokens to call it with; for a
    capability with resources, the one to read; for a provider that wants calls signed, the app that was granted."""

    scopes: frozenset[str]
    credentials: Credentials
    resource: Resource | None = None
    app_id: str | None = None
    app_secret: str | None = None


class ProviderSandbox(Protocol):
    """A connector's provider as the sandbox plays it over real HTTP; each connector's test supplies one."""

    url: str

    def seed(self, capability: str, records: int) -> str:
        """A new account holding `records` records of the capability; its id."""
        ...

    def add(self, capability: str, account: str) -> str:
        """One new record in the account; its external id."""
        ...

    def delete(self, capability: str, account: str, external_id: str) -> None:
        """Delete a record at the provider (only called when the connector's contract says it reports deletions)."""
        ...

    def expire_cursor(self, capability: str, account: str) -> None:
        """Expire every cursor the account was given, as the provider does when their time is up (only called
        when the connector's contract says its cursors expire)."""
        ...

    def grant(self, account: str, scopes: Sequence[str]) -> Grant:
        """The account consents to `scopes` through the auth provider's config and the OAuth engine."""
        ...


def base_env(slug: str, auth_provider: str) -> dict[str, str]:
    """Valid hub settings that reach nothing (loading settings connects to no server), with the connector enabled."""
    prefix = f"SYNCHUB_{auth_provider.upper()}__"
    return {
        "SYNCHUB_DATABASE_URL": "postgresql://contract@127.0.0.1:1/contract",
        "SYNCHUB_REDIS_URL": "redis://127.0.0.1:1/0",
        "SYNCHUB_PUBLIC_URL": "http://127.0.0.1:8000",
        "SYNCHUB_VAULT__KEYS": f"1:{base64.b64encode(secrets.token_bytes(32)).decode()}",
        "SYNCHUB_VAULT__ACTIVE_KEY_ID": "1",
        "SYNCHUB_IDENTITY__JWT_SECRET": secrets.token_urlsafe(48),
        "SYNCHUB_CONNECTORS": slug,
        prefix + "CLIENT_ID": "contract-client",
        prefix + "CLIENT_SECRET": "contract-secret",
    }


def connector_settings(spec: ConnectorSpec, settings: Settings) -> ConnectorSettings:
    """The connector's own settings as the hub loads them, from `SYNCHUB_<SLUG>__*`."""
    return registry.settings_of(settings, spec)


def field_name(spec: ConnectorSpec, variable: str) -> str:
    prefix = f"SYNCHUB_{spec.slug.upper()}__"
    assert variable.startswith(prefix), f"{variable} is not under the connector's prefix {prefix}"
    return variable.removeprefix(prefix).lower()


def quoted_json(markdown: str) -> list[Any]:
    """Every JSON value `markdown` quotes, in fenced ```json blocks or inline code spans."""
    fenced = re.findall(r"^[ \t]*```json[ \t]*\n(.*?)^[ \t]*```", markdown, re.M | re.S)
    inline = re.findall(r"`(\{[^`\n]*\})`", markdown)
    values = []
    for text in [textwrap.dedent(block) for block in fenced] + inline:
        try:
            values.append(json.loads(text))
        except ValueError:
            continue
    return values


def answers_app(folder: Path, answers: Mapping[str, Answer]) -> Starlette:
    """Answers any request under `/<payload name>/` with that payload, its status and headers, and nothing more."""

    async def play(request: Request) -> Response:
        name = request.path_params["name"]
        answer = answers[name]
        return Response((folder / f"{name}.json").read_bytes(), answer.status, dict(answer.headers))

    methods = ["GET", "POST", "PUT", "PATCH", "DELETE", "PROPFIND", "REPORT"]
    return Starlette(routes=[Route("/{name}/{rest:path}", play, methods=methods)])


@dataclass(frozen=True)
class Reading:
    """A full pass over a freshly seeded account, and the stream's `read` to go on from its checkpoints."""

    account: str
    read: Callable[[Cursor | None], Iterator[Page]]
    pages: list[Page]


def read_pass(read: Callable[[Cursor | None], Iterator[Page]], cursor: Cursor | None) -> list[Page]:
    pages: list[Page] = []
    for page in read(cursor):
        pages.append(page)
        assert len(pages) <= MAX_PAGES, f"the stream yielded more than {MAX_PAGES} pages"
    return pages


def external_ids(pages: Sequence[Page]) -> list[str]:
    return [record.external_id for page in pages for record in page.records]


class ConnectorContract:
    """Inherit in `class Test<Name>Contract(ConnectorContract)` and set the attributes below.

    `reports_deletions` is False for a provider that never says a record went (leads). A connector whose cursors
    cannot expire (its own time marks) sets `test_an_expired_cursor_raises_cursor_expired = None`, so that part of
    the contract is not collected for it (a skip would fail CI).
    """

    spec: ClassVar[ConnectorSpec]
    settings_env: ClassVar[Mapping[str, str]] = {}
    invalid_settings_env: ClassVar[Mapping[str, str]] = {}
    answers: ClassVar[Mapping[str, Answer]] = {}
    reports_deletions: ClassVar[bool] = True

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        if "capability" in metafunc.fixturenames:
            metafunc.parametrize("capability", self.spec.capabilities, ids=lambda c: c.name)
        if "answer" in metafunc.fixturenames:
            metafunc.parametrize("answer", sorted(self.answers))

    @classmethod
    def fixtures_dir(cls) -> Path:
        return ROOT / "connectors" / cls.spec.slug / "fixtures"

    def settings(self, extra: Mapping[str, str]) -> Settings:
        return settings_from_env({**base_env(self.spec.slug, self.spec.auth_provider), **extra})

    def context(self, account: str, grant: Grant, url: str) -> StreamContext:
        section = connector_settings(self.spec, self.settings(self.settings_env))
        return StreamContext(
            connection_id=account,
            credentials=grant.credentials,
            base_url=url,
            settings=section,
            resource=grant.resource,
            app_id=grant.app_id,
            app_secret=grant.app_secret,
        )

    def granted(self, provider: ProviderSandbox, account: str, capability: Capability) -> Grant:
        """What the hub's connect step asks for: the provider's sign-in scopes and the capability's."""
        config = PROVIDERS[self.spec.auth_provider]
        return provider.grant(account, list(dict.fromkeys([*config.signin_scopes, *capability.requested_scopes])))

    def full_pass(self, provider: ProviderSandbox, capability: Capability, records: int = RECORDS) -> Reading:
        account = provider.seed(capability.name, records)
        stream = capability.stream(self.context(account, self.granted(provider, account, capability), provider.url))
        return Reading(account, stream.read, read_pass(stream.read, None))

    @pytest.fixture(scope="class")
    @classmethod
    def answer_url(cls) -> Iterator[str]:
        with LiveServer(answers_app(cls.fixtures_dir(), cls.answers)) as server:
            yield server.url

    def test_spec_is_valid(self) -> None:
        spec = self.spec
        assert SLUG.fullmatch(spec.slug), f"{spec.slug!r} is not a lower-case identifier"
        assert registry.available()[spec.slug] is spec
        assert spec.display_name.strip()
        assert spec.capabilities, "a connector declares at least one capability"
        names = [capability.name for capability in spec.capabilities]
        assert len(set(names)) == len(names), f"capability names repeat: {names}"
        assert spec.rate_limits.app_per_minute > 0 and spec.rate_limits.connection_per_minute > 0
        if spec.needs_oauth_client:
            assert spec.auth_provider in PROVIDERS, f"no OAuth provider config named {spec.auth_provider!r}"
        for capability in spec.capabilities:
            assert SLUG.fullmatch(capability.name) and capability.display_name.strip()
            assert capability.record_kind in kinds(), f"no record kind {capability.record_kind!r}"
            assert MIN_POLL_SECONDS <= capability.poll_interval.total_seconds() <= MAX_POLL_SECONDS
            module = inspect.getmodule(capability.stream)
            assert module is not None and module.__name__.startswith(f"connectors.{spec.slug}.")

    def test_enabling_needs_its_auth_providers_client(self) -> None:
        assert configured(self.settings(self.settings_env)) == [self.spec]
        if not self.spec.needs_oauth_client:
            return
        prefix = f"SYNCHUB_{self.spec.auth_provider.upper()}__"
        env = {**base_env(self.spec.slug, self.spec.auth_provider), **self.settings_env}
        unconfigured = {name: value for name, value in env.items() if not name.startswith(prefix)}
        with pytest.raises(ConfigError, match=f"^{prefix}CLIENT_ID and __CLIENT_SECRET are not set$"):
            configured(settings_from_env(unconfigured))

    def test_settings_load_from_the_slug_prefix(self) -> None:
        assert self.settings_env, "set settings_env to values that differ from the connector's defaults"
        section = connector_settings(self.spec, self.settings(self.settings_env))
        given = {field_name(self.spec, name): value for name, value in self.settings_env.items()}
        assert section == type(section).model_validate(given)
        required = {name: getattr(section, name) for name, f in type(section).model_fields.items() if f.is_required()}
        defaults = type(section)(**required)  # a webhook connector's verify token has no default
        assert section != defaults, "settings_env must change something, or this check proves nothing"

    def test_invalid_settings_are_refused_one_line_per_variable(self) -> None:
        assert self.invalid_settings_env, "set invalid_settings_env to values the settings model refuses"
        with pytest.raises(ConfigError) as refused:
            configured(self.settings(self.invalid_settings_env))
        named = {line.split(" ", 1)[0] for line in str(refused.value).splitlines()}
        assert named == set(self.invalid_settings_env)

    def test_scopes_resolve(self, provider: ProviderSandbox, capability: Capability) -> None:
        if not self.spec.needs_oauth_client:  # a password or key opens the whole account: nothing to ask for
            assert not capability.requested_scopes and capability.required.unscoped
            assert allows((), capability.required)
            return
        assert capability.requested_scopes, "a capability asks for the scopes it needs"
        config = PROVIDERS[self.spec.auth_provider]
        asked = {config.expand_scope(scope) for scope in capability.requested_scopes}
        assert allows(asked, capability.required), "what the capability asks for answers every group it needs"
        account = provider.seed(capability.name, 0)
        grant = self.granted(provider, account, capability)
        assert asked <= grant.scopes
        assert allows(grant.scopes, capability.required)

    def test_full_pass_yields_pages_each_with_a_checkpoint(
        self, provider: ProviderSandbox, capability: Capability
    ) -> None:
        reading = self.full_pass(provider, capability)
        pages = reading.pages
        assert len(pages) > 1, "make the page size in settings_env smaller than the records seeded"
        assert [page.last for page in pages] == [False] * (len(pages) - 1) + [True]
        assert all(page.full for page in pages)
        assert all(json.loads(json.dumps(page.checkpoint)) == page.checkpoint for page in pages)
        assert pages[-1].checkpoint, "the last page carries the cursor of the next incremental read"
        ids = external_ids(pages)
        assert len(ids) == RECORDS and len(set(ids)) == RECORDS

    def test_a_checkpoint_resumes_the_pass_after_its_page(
        self, provider: ProviderSandbox, capability: Capability
    ) -> None:
        reading = self.full_pass(provider, capability)
        first, *rest = reading.pages
        resumed = read_pass(reading.read, first.checkpoint)
        assert external_ids(resumed) == external_ids(rest)
        assert resumed[-1].last and all(page.full for page in resumed)

    def test_the_last_cursor_reads_changes_only(self, provider: ProviderSandbox, capability: Capability) -> None:
        reading = self.full_pass(provider, capability)
        quiet = read_pass(reading.read, reading.pages[-1].checkpoint)
        assert quiet[-1].last and quiet[-1].checkpoint and not any(page.full for page in quiet)
        assert external_ids(quiet) == [] and [i for page in quiet for i in page.deleted_ids] == []

        added = provider.add(capability.name, reading.account)
        gone = external_ids(reading.pages)[0]
        if self.reports_deletions:
            provider.delete(capability.name, reading.account, gone)
        changed = read_pass(reading.read, quiet[-1].checkpoint)
        assert external_ids(changed) == [added]
        assert [i for page in changed for i in page.deleted_ids] == ([gone] if self.reports_deletions else [])

    def test_an_expired_cursor_raises_cursor_expired(self, provider: ProviderSandbox, capability: Capability) -> None:
        reading = self.full_pass(provider, capability)
        provider.expire_cursor(capability.name, reading.account)
        with pytest.raises(CursorExpired):
            next(reading.read(reading.pages[-1].checkpoint))

    def test_provider_answer_is_classified(self, provider: ProviderSandbox, answer_url: str, answer: str) -> None:
        capability = self.spec.capabilities[0]
        account = provider.seed(capability.name, 0)
        context = self.context(account, self.granted(provider, account, capability), f"{answer_url}/{answer}/")
        with pytest.raises(ConnectorError) as raised:
            next(capability.stream(context).read(None))
        assert type(raised.value) is self.answers[answer].expected, raised.value

    def test_every_payload_is_in_the_table_and_every_entry_has_a_payload(self) -> None:
        files = {path.stem for path in self.fixtures_dir().glob("*.json")}
        assert files == set(self.answers)
        assert all(PAYLOAD_NAME.fullmatch(name) for name in files), "name payloads <event>__<variant>.json"

    def test_payloads_are_quoted_verbatim_in_providers_md(self) -> None:
        assert PROVIDERS_MD.is_file(), f"the provider reference is missing at {PROVIDERS_MD}"
        quoted = quoted_json(PROVIDERS_MD.read_text())
        for name in self.answers:
            body = json.loads((self.fixtures_dir() / f"{name}.json").read_bytes())
            assert body in quoted, f"{name}.json is not a body providers.md quotes"
