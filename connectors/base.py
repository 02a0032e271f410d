"""The connector interfaces: specs, capabilities, streams that yield pages, and the context a stream runs in."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, Field, SecretStr

from core.models import Sharing
from core.scopes import Scopes
from core.settings import MAX_POLL_SECONDS, MIN_POLL_SECONDS

Cursor = Mapping[str, Any]


@dataclass(frozen=True)
class Page:
    """One page of a stream: records to upsert, external ids deleted, and the cursor that is safe after it.

    `last` marks the final page of a pass; a full pass (`full`) may delete what it did not see only then.
    `total` is the provider's count of items in the pass when it tells one (for progress).
    """

    records: list[Any]
    deleted_ids: list[str]
    checkpoint: Cursor
    last: bool
    full: bool
    total: int | None = None
    window: tuple[datetime, datetime] | None = None
    """A full pass that read only this time range: its deletion by diff keeps to records within it."""


class Stream(Protocol):
    def read(self, cursor: Cursor | None) -> Iterator[Page]:
        """Yield pages from `cursor` (None: a full pass); raise CursorExpired if the cursor is no longer valid."""
        ...


class Credentials(Protocol):
    """A connection's credentials as a stream sees them, read from the vault at each call.

    OAuth access tokens are refreshed under the connection's lock; named secrets (an app password, a Page token
    `page:<id>`) are sealed beside them and never refreshed. A credential that is gone or can no longer be renewed
    raises AuthRevoked: the connection needs the user to connect again.
    """

    def access_token(self) -> str:
        """An OAuth access token valid for at least a few more minutes (or until its own expiry, when it cannot
        be renewed)."""
        ...

    def rejected(self, token: str) -> str:
        """The provider refused `token` (401): refresh once and return the new one, or raise AuthRevoked."""
        ...

    def secret(self, name: str) -> str:
        """The named secret; raises SecretMissing (an AuthRevoked) when the connection holds none by that name."""
        ...

    def keep(self, name: str, value: str) -> None:
        """Seal `value` as the named secret, replacing the one stored before."""
        ...


def _once(call: Callable[[], Any]) -> Any:
    return call()


def _uncounted() -> None:
    return None


class ConnectorSettings(BaseModel):
    """What a deployment may tune for every connector, read from `SYNCHUB_<SLUG>__*`; a connector's own settings
    model extends it with its knobs (its spec's `settings`)."""

    poll_interval_seconds: int | None = Field(
        default=None,
        ge=MIN_POLL_SECONDS,
        le=MAX_POLL_SECONDS,
        description="Poll interval for this deployment; unset uses the connector's.",
    )
    app_requests_per_minute: int | None = Field(
        default=None, ge=1, description="Quota of the whole provider app; unset uses the connector's."
    )
    connection_requests_per_minute: int | None = Field(
        default=None, ge=1, description="Quota of one connection; unset uses the connector's."
    )
    resource_requests_per_minute: int | None = Field(
        default=None, ge=1, description="Quota of one resource (a Page, a calendar); unset uses the connector's."
    )


class WebhookConnectorSettings(ConnectorSettings):
    """The settings of a connector that receives webhooks: the body cap of its receiver, and the token the
    provider echoes in its subscription handshake."""

    webhook_max_body_bytes: int = Field(
        default=1024 * 1024, ge=1024, description="Largest webhook body this connector's receiver accepts; 413 above."
    )
    verify_token: SecretStr = Field(
        min_length=16, description="The token the provider sends back in its subscription handshake."
    )


@dataclass(frozen=True)
class Resource:
    """Something inside a connection that the user chooses to sync: a calendar, a Page with its forms.

    `external_id` is the provider's id (a calendar id, a CalDAV URL: often longer than 64 characters); `detail` is
    what else the connector needs from the listing (a Page's forms, whether it can push).
    """

    external_id: str
    display_name: str
    detail: Mapping[str, Any] = field(default_factory=dict)
    parts: frozenset[str] | None = None
    """The parts the user chose within it (a Page's forms, by id), where the capability lists parts; None: all."""


@dataclass(frozen=True)
class OpenChannel:
    """A push channel the hub keeps for one resource: its id, the provider's id of the watched resource, and
    when it expires."""

    id: str
    provider_resource_id: str | None
    expires_at: datetime | None


class Channels(Protocol):
    """Where a connector's lifecycle keeps the push channels of `ctx.resource` (the sync package supplies it when
    the hub may receive pushes: its public URL is https, or a dev setting allows http)."""

    address: str
    """The URL the provider is to notify."""

    def new(self) -> tuple[str, str]:
        """A fresh channel id and its secret token (only its hash is kept)."""
        ...

    def opened(
        self, channel_id: str, token: str, provider_resource_id: str | None, expires_at: datetime | None
    ) -> None: ...

    def live(self) -> list[OpenChannel]:
        """The resource's channels not yet stopped."""
        ...

    def stopped(self, channel_id: str) -> None: ...


@dataclass(frozen=True)
class StreamContext:
    """What a stream needs to reach its provider for one connection.

    `attempt` wraps each provider call in the hub's retry policy (the sync package supplies it). `sent` is called
    just before each request leaves for the provider, retries included: the run counts these as its API calls.
    `resource` is the resource the stream reads (or a lifecycle call is about), None for a capability without any.
    `base_url` is where the provider answers: the OAuth client's API base (a sandbox in tests), or for a connector
    without an OAuth client the account's own address, its provider account id (a CalDAV principal URL).
    `app_id` and `app_secret` are the auth provider's OAuth client, for a provider that wants each API call signed
    with it (Meta's `appsecret_proof`); None where the connector has no OAuth client.
    """

    connection_id: str
    credentials: Credentials
    base_url: str | None
    settings: ConnectorSettings = field(default_factory=ConnectorSettings)
    attempt: Callable[[Callable[[], Any]], Any] = _once
    sent: Callable[[], None] = _uncounted
    resource: Resource | None = None
    app_id: str | None = None
    app_secret: str | None = None
    channels: Channels | None = None


class Lifecycle(Protocol):
    """What a connector does at the provider when the user chooses a resource (`ctx.resource`) or stops syncing it:
    subscribe a Page, open a push channel, and undo it."""

    def selected(self, ctx: StreamContext) -> None: ...

    def deselected(self, ctx: StreamContext) -> None: ...


@dataclass(frozen=True)
class Capability:
    """A thing a connector syncs: its name on the connection, the scopes it needs and how to read it.

    `required` is what the grant must hold for the capability to run (every group, any one scope within a group);
    `requested_scopes` is what the connect flow asks the provider for, one answer to each group at least. A
    capability with `resources` syncs one stream per resource the user selected among those it lists
    (`ctx.resource` set), optionally narrowed to some of its `parts`; `lifecycle` reacts when one is selected or
    deselected. `shared_at_provider`: what selecting
    sets up exists once per (app, resource) at the provider, shared by every connection to it (a Page's app
    subscription), so it is undone only when no other connection still selects the resource.
    """

    name: str
    display_name: str
    record_kind: str
    required: Scopes
    requested_scopes: tuple[str, ...]
    stream: Callable[[StreamContext], Stream]
    poll_interval: timedelta = timedelta(minutes=15)
    resources: Callable[[StreamContext], list[Resource]] | None = None
    resource_noun: str = "resources"  # what the settings page calls them: "Choose Pages"
    lifecycle: Lifecycle | None = None
    shared_at_provider: bool = False
    parts: Callable[[StreamContext], list[Resource]] | None = None
    """What a chosen resource (`ctx.resource`) holds that the user may narrow it to (a Page's lead forms); the
    stream and the webhook then read `ctx.resource.parts`."""
    part_noun: str = "parts"


@dataclass(frozen=True)
class RateLimits:
    """A provider's quotas in requests per minute: for the whole app, for one connection and, when the provider
    limits each resource (Meta's Business Use Case limits are per Page), for one resource of the app.

    The app is what `app_key` names for a context (a CalDAV server's host); unset, it is the auth provider's OAuth
    client. Deployments can override the figures per connector (`SYNCHUB_<CONNECTOR>__APP_REQUESTS_PER_MINUTE`, ...).
    """

    app_per_minute: int
    connection_per_minute: int
    resource_per_minute: int | None = None
    app_key: Callable[[StreamContext], str] | None = None


@dataclass(frozen=True)
class Delivery:
    """One change a webhook POST carried: `dedupe_key` recognises a redelivery, `route_key` is the resource's
    external id it concerns (a Page id), `payload` what processing needs (ids, not contents). An `ignored` one is
    stored as such and never processed (a change kind or object the connector does not sync)."""

    dedupe_key: str
    route_key: str
    payload: Mapping[str, Any]
    ignored: bool = False


@dataclass(frozen=True)
class WebhookKeys:
    """What a webhook checks requests with: the auth provider's client secret (the signing key of most providers)
    and the connector's verify token."""

    client_secret: str
    verify_token: str


class Webhook(Protocol):
    """A connector's webhook: the provider's handshake and signature, how a POST splits into deliveries, and how
    one delivery becomes records.

    The receiver calls `verify` on the raw bytes before anything parses them, and stores what `split` returns;
    a worker later calls `process` for each delivery routed to a connection, with that connection's context
    (`ctx.resource` is the routed resource).
    """

    def handshake(self, query: Mapping[str, str], keys: WebhookKeys) -> str | None:
        """The challenge to echo when the query proves the provider knows the verify token, else None."""
        ...

    def verify(self, headers: Mapping[str, str], body: bytes, keys: WebhookKeys) -> bool:
        """Whether the raw body's signature holds (compared in constant time)."""
        ...

    def split(self, body: bytes) -> list[Delivery]:
        """The deliveries of a verified body; raises ValueError (or any error) when the body is malformed."""
        ...

    def process(self, delivery: Delivery, ctx: StreamContext) -> Page | None:
        """The records a delivery brings, as a page to upsert (an empty one: nothing for this connection, say a
        form it did not choose); None asks for a sync of the routed resource instead. Raises the taxonomy's errors
        (core.errors) as a stream does."""
        ...


@runtime_checkable
class BatchWebhook(Webhook, Protocol):
    """A webhook whose deliveries for one resource are fetched together (Graph's `?ids=`): a worker claims
    what is pending of this connector beside what its task names, and hands each resource's deliveries over in
    groups of at most `batch_size`."""

    batch_size: int

    def process_batch(self, deliveries: Sequence[Delivery], ctx: StreamContext) -> list[Page | Exception | None]:
        """`process` for each delivery, in order, from as few provider calls as it can; a delivery the provider
        refuses alone gets its error (core.errors) in its place. Raises as `process` does when the provider
        refuses them all."""
        ...


@runtime_checkable
class ChannelWebhook(Webhook, Protocol):
    """A push-channel webhook (Google's): notifications have empty bodies and name their channel and its token in
    headers, checked against the channels the hub keeps instead of a signature."""

    def channel(self, headers: Mapping[str, str]) -> tuple[str, str]:
        """The notification's channel id and token; raises when the headers do not name them."""
        ...

    def notification(self, headers: Mapping[str, str], route_key: str) -> Delivery:
        """The delivery a notification for a channel routed to `route_key` is stored as."""
        ...


@dataclass(frozen=True)
class OperatorContext:
    """What an operator command of a connector works with: the hub's public URL, the auth provider's OAuth client
    (`base_url` only for the sandbox), and the connector's own settings."""

    public_url: str
    client_id: str
    client_secret: str
    base_url: str | None
    settings: ConnectorSettings
    timeout: float = 15.0


@dataclass(frozen=True)
class Command:
    """An operator command a connector adds to the CLI as `synchub <auth provider> <name>`: `run` returns what to
    print, and raises ConnectorError (its message shown) when the provider refuses."""

    name: str
    help: str
    run: Callable[[OperatorContext], str]


@dataclass(frozen=True)
class ConnectorSpec:
    """A connector: slug (folder, URL segment, settings prefix), name, auth provider, capabilities, the model
    of its own settings (`SYNCHUB_<SLUG>__*`), and who reads the records of a connection it creates until the
    owner chooses (`default_sharing`: a person's own data stays theirs; a business's, such as a Page's leads, is
    the workspace's). A connector with a `webhook` is served at `/webhooks/<slug>` and its settings extend
    WebhookConnectorSettings."""

    slug: str
    display_name: str
    auth_provider: str
    capabilities: tuple[Capability, ...] = ()
    rate_limits: RateLimits = RateLimits(app_per_minute=600, connection_per_minute=60)
    needs_oauth_client: bool = True
    settings: type[ConnectorSettings] = ConnectorSettings
    default_sharing: Sharing = Sharing.OWNER
    webhook: Webhook | None = None
    commands: tuple[Command, ...] = ()
