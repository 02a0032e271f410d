"""In-memory state of the fake Google: settings, OAuth clients, accounts, grants, authorization codes and tokens."""

from __future__ import annotations

import hashlib
import random
import secrets
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, Field

from sandbox.cursors import Cursors
from sandbox.google.calendar.channels import Channel, ChannelSender, Notification
from sandbox.google.calendar.seed import seed_calendars
from sandbox.google.calendar.store import CalendarBook
from sandbox.google.contacts import ContactBook
from sandbox.google.data import generated_contact
from sandbox.google.scopes import EMAIL, PROFILE

SEEDED_EPOCH = 1735689600.0
DEFAULT_ACCOUNTS = (("ada@sandbox.test", "Ada Lovelace", 250), ("grace@sandbox.test", "Grace Hopper", 40))
TokenKind = Literal["access", "refresh"]


class GoogleSettings(BaseModel):
    access_token_lifetime: float = Field(default=3599, ge=0, description="Seconds; `expires_in` of access tokens.")
    auth_code_lifetime: float = Field(default=600, ge=0, description="Seconds an authorization code can be exchanged.")
    refresh_token_lifetime: float | None = Field(
        default=None, ge=0, description="Seconds; None never expires. 604800 simulates the 7-day Testing-mode rule."
    )
    refresh_tokens_per_client: int = Field(default=100, ge=1, description="Issuing one more revokes the oldest.")
    sync_token_max_age: float = Field(default=7 * 86400, ge=0, description="Seconds before a sync token expires.")
    sync_token_age_from: Literal["full_sync", "issue"] = Field(
        default="full_sync", description="UNVERIFIED: whether a token's age counts from the full sync or its own issue."
    )
    expired_sync_token_status: Literal["FAILED_PRECONDITION", "INVALID_ARGUMENT"] = Field(
        default="FAILED_PRECONDITION", description="UNVERIFIED: the google.rpc status of the EXPIRED_SYNC_TOKEN error."
    )
    withhold_refresh_tokens: bool = Field(
        default=False,
        description="Sandbox-only: answer code exchanges without a refresh token, as Google does on re-consent "
        "without prompt=consent, so clients can prove they never blank a stored one.",
    )
    omit_token_scope: bool = Field(
        default=False,
        description="Sandbox-only: answer token requests without `scope`, as providers that lean on RFC 6749 5.1 "
        "do, so clients can prove they never take what they asked for as granted.",
    )
    force_scope_checkboxes: bool = Field(
        default=False, description="Sandbox-only: show a checkbox even when a single non-sign-in scope is requested."
    )
    calendar_sync_token_max_age: float | None = Field(
        default=None, ge=0, description="UNVERIFIED: seconds before a Calendar sync token gives 410; None never."
    )
    calendar_rate_limit_status: Literal[403, 429] = Field(
        default=403, description="Status of Calendar's `rateLimitExceeded` when a per-user quota refuses a call."
    )
    calendar_short_pages: bool = Field(
        default=False, description="Sandbox-only: Calendar pages hold half of maxResults, as Google may."
    )
    calendar_omit_sync_token: bool = Field(
        default=False,
        description="UNVERIFIED, reported: a full listing's last page carries no nextSyncToken (some parameter "
        "combinations were said to do this); incremental listings keep theirs.",
    )
    calendar_channel_default_ttl: float = Field(default=604800, gt=0, description="Seconds a channel lives by default.")
    calendar_channel_max_ttl: float = Field(
        default=604800, gt=0, description="UNVERIFIED: a longer requested channel lifetime is capped to this."
    )
    calendar_require_https: bool = Field(
        default=False, description="Refuse http channel addresses as Google does (the sandbox accepts them by default)."
    )
    calendar_drop_notifications: bool = Field(default=False, description="Record notifications but never send them.")
    calendar_notification_timeout: float = Field(default=5.0, gt=0, description="Seconds a receiver has to answer.")
    calendar_notification_attempts: int = Field(default=5, ge=1, description="Tries per notification (5xx retried).")
    calendar_notification_retry_delay: float = Field(default=1.0, gt=0, description="Seconds before the first retry.")


@dataclass(frozen=True)
class OAuthClient:
    client_id: str
    client_secret: str
    redirect_uris: tuple[str, ...]


@dataclass
class Account:
    email: str
    name: str
    sub: str
    book: ContactBook
    calendars: CalendarBook

    def claims(self, scopes: tuple[str, ...]) -> dict[str, Any]:
        """OpenID claims the granted scopes allow."""
        given, _, family = self.name.partition(" ")
        claims: dict[str, Any] = {"sub": self.sub}
        if PROFILE in scopes:
            claims.update(name=self.name, given_name=given, picture=f"https://lh3.googleusercontent.com/a/{self.sub}")
            claims.update({"family_name": family} if family else {})
        if EMAIL in scopes:
            claims.update(email=self.email, email_verified=True)
        return claims


@dataclass
class AuthCode:
    client_id: str
    redirect_uri: str
    account: str
    scopes: tuple[str, ...]
    offline: bool
    consent_shown: bool
    code_challenge: str | None
    code_challenge_method: str | None
    nonce: str | None
    expires_at: float
    used: bool = False


@dataclass
class IssuedToken:
    value: str
    kind: TokenKind
    client_id: str
    account: str
    scopes: tuple[str, ...]
    issued_at: float
    expires_at: float | None
    parent: str | None = None
    revoked: bool = False

    def live(self, now: float) -> bool:
        return not self.revoked and (self.expires_at is None or now < self.expires_at)

    def record(self, now: float) -> dict[str, Any]:
        return {**asdict(self), "scopes": list(self.scopes), "live": self.live(now)}


def subject_id(email: str) -> str:
    return "1" + str(int(hashlib.sha256(email.encode()).hexdigest(), 16))[:20]


def new_secret(prefix: str, size: int) -> str:
    return prefix + secrets.token_urlsafe(size)


@dataclass
class GoogleState:
    seed: int
    settings: GoogleSettings = field(default_factory=GoogleSettings)
    clients: dict[str, OAuthClient] = field(default_factory=dict)
    accounts: dict[str, Account] = field(default_factory=dict)
    grants: dict[tuple[str, str], set[str]] = field(default_factory=dict)
    codes: dict[str, AuthCode] = field(default_factory=dict)
    tokens: dict[str, IssuedToken] = field(default_factory=dict)
    grant_tokens: dict[tuple[str, str], list[IssuedToken]] = field(default_factory=dict)
    cursors: Cursors = field(default_factory=lambda: Cursors(secrets.token_bytes(32)))
    channels: dict[tuple[str, str], Channel] = field(default_factory=dict)
    notifications: list[Notification] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.sender = ChannelSender(self)

    def __getstate__(self) -> dict[str, Any]:
        """What a state file keeps: everything but the notification sender's tasks."""
        return {name: value for name, value in vars(self).items() if name != "sender"}

    def __setstate__(self, saved: dict[str, Any]) -> None:
        vars(self).update(saved)
        self.__post_init__()

    @classmethod
    def seeded(cls, seed: int) -> GoogleState:
        state = cls(seed)
        for email, name, contacts in DEFAULT_ACCOUNTS:
            account = state.seed_account(email, name, contacts, seed)
            seed_calendars(account.calendars, demo=True)
        return state

    def register_client(self, client: OAuthClient) -> None:
        self.clients[client.client_id] = client

    def seed_account(self, email: str, name: str, contacts: int, seed: int) -> Account:
        """A fresh account (replacing one with that email) whose contacts depend only on `seed` and the email."""
        rng = random.Random(f"{seed}:{email}")
        book = ContactBook(rng)
        for index in range(contacts):
            book.add(generated_contact(rng, index), SEEDED_EPOCH + index * 97.0)
        calendars = CalendarBook(email, random.Random(f"{seed}:{email}:calendar"))
        seed_calendars(calendars, demo=False)
        account = Account(email, name, subject_id(email), book, calendars)
        self.accounts[email] = account
        return account

    def granted(self, account: str, client_id: str) -> set[str]:
        return self.grants.get((account, client_id), set())

    def record_grant(self, account: str, client_id: str, scopes: tuple[str, ...]) -> None:
        self.grants[(account, client_id)] = self.granted(account, client_id) | set(scopes)

    def issue_code(self, code: AuthCode) -> str:
        value = new_secret("4/0A", 48)
        self.codes[value] = code
        return value

    def issue_token(
        self, kind: TokenKind, client_id: str, account: str, scopes: tuple[str, ...], parent: str | None = None
    ) -> IssuedToken:
        now = time.time()
        lifetime = self.settings.access_token_lifetime if kind == "access" else self.settings.refresh_token_lifetime
        value = new_secret("ya29.a0" if kind == "access" else "1//0g", 64 if kind == "access" else 48)
        token = IssuedToken(
            value, kind, client_id, account, scopes, now, None if lifetime is None else now + lifetime, parent
        )
        self.tokens[value] = token
        self.grant_tokens.setdefault((account, client_id), []).append(token)
        if kind == "refresh":
            self.enforce_refresh_limit(account, client_id, now)
        return token

    def enforce_refresh_limit(self, account: str, client_id: str, now: float) -> None:
        live = [t for t in self.grant_tokens[(account, client_id)] if t.kind == "refresh" and t.live(now)]
        for oldest in live[: max(0, len(live) - self.settings.refresh_tokens_per_client)]:
            self.revoke_family(oldest)

    def revoke_family(self, refresh: IssuedToken) -> None:
        refresh.revoked = True
        for token in self.grant_tokens[(refresh.account, refresh.client_id)]:
            token.revoked = token.revoked or token.parent == refresh.value

    def revoke_grant(self, account: str, client_id: str) -> int:
        """What the user's "remove access" does: every token of the grant dies and consent is forgotten."""
        self.grants.pop((account, client_id), None)
        tokens = [t for t in self.grant_tokens.get((account, client_id), []) if not t.revoked]
        for token in tokens:
            token.revoked = True
        return len(tokens)

    def narrow_grant(self, account: str, client_id: str, remove: set[str]) -> int:
        """What unticking a permission in the account's settings does: the grant and its live tokens lose scopes."""
        if (account, client_id) in self.grants:
            self.grants[(account, client_id)] -= remove
        narrowed = 0
        for token in self.grant_tokens.get((account, client_id), []):
            if not token.revoked and remove & set(token.scopes):
                token.scopes = tuple(s for s in token.scopes if s not in remove)
                narrowed += 1
        return narrowed

    def expire_tokens(self, kind: TokenKind, account: str | None, client_id: str | None) -> int:
        now = time.time()
        matching = [
            t
            for t in self.tokens.values()
            if t.kind == kind and t.live(now) and account in (None, t.account) and client_id in (None, t.client_id)
        ]
        for token in matching:
            token.expires_at = now
        return len(matching)
