"""Auth providers that take credentials through a form (a server URL, a username, an app password) instead of a
consent flow: the fields they declare, so the page renders them without knowing the provider, and the check that
runs before anything is stored."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel

from core.settings import Settings
from oauth.config import Account


@dataclass(frozen=True)
class Preset:
    """A value the page offers for a field (a well-known provider's server URL, under its name)."""

    label: str
    value: str


@dataclass(frozen=True)
class FormField:
    """One input of a provider's connect form. A `password` field is a secret: sealed in the vault under its name,
    never shown again, never echoed back in a page or an answer."""

    name: str
    label: str
    type: Literal["url", "text", "email", "password"] = "text"
    placeholder: str = ""
    presets: tuple[Preset, ...] = ()
    autocomplete: str = "off"
    help: str = ""

    @property
    def secret(self) -> bool:
        return self.type == "password"


@dataclass(frozen=True)
class Verified:
    """What a form's check found: the account (its provider account id and a label to show) and the named secrets
    to seal for the connection."""

    account: Account
    secrets: Mapping[str, str]


class CredentialsRefused(Exception):
    """The check failed and nothing was stored: `reason` is a short code for the CRM (`missing` for an empty
    field, `other_account` for a reconnect that signs in elsewhere, the provider's own codes otherwise), the message
    plain words for the user."""

    def __init__(self, reason: str, detail: str, status: int = 400) -> None:
        super().__init__(detail)
        self.reason, self.detail, self.status = reason, detail, status


@dataclass(frozen=True)
class FormProviderConfig:
    """An auth provider connected by a form.

    `verify(settings, values)` checks the submitted values against the provider (discovery, sign-in) and returns
    the account and the secrets to seal, or raises CredentialsRefused; it stores nothing. `prefill(account_id,
    label)` is what a reconnect's form shows of a connection (never a secret); `reconnect_prompt` asks for what
    changed ("enter your new app password")."""

    name: str
    display_name: str
    title: str
    fields: tuple[FormField, ...]
    verify: Callable[[Settings, Mapping[str, str]], Verified]
    settings: type[BaseModel] | None = None
    """The model of the provider's own settings (`SYNCHUB_<NAME>__*`), when it reads any."""
    prefill: Callable[[str, str | None], Mapping[str, str]] = lambda _account_id, _label: {}
    reconnect_prompt: str = "Enter your new password."
    intro: str = ""
    note: Callable[[Settings], str | None] = lambda _settings: None
    """A deployment's line for the form (the dev hub's demo server and account)."""

    def values(self, submitted: Mapping[str, object]) -> dict[str, str]:
        """The declared fields' submitted values (strings, trimmed unless secret); nothing else is read."""
        found: dict[str, str] = {}
        for item in self.fields:
            value = submitted.get(item.name)
            text = value if isinstance(value, str) else ""
            found[item.name] = text if item.secret else text.strip()
        return found

    def shown(self, values: Mapping[str, str]) -> dict[str, str]:
        """What the page may show back: every value but the secrets."""
        return {item.name: values.get(item.name, "") for item in self.fields if not item.secret}

    def check(self, settings: Settings, submitted: Mapping[str, object]) -> Verified:
        values = self.values(submitted)
        empty = [item.label for item in self.fields if not values[item.name]]
        if empty:
            raise CredentialsRefused("missing", f"Fill in: {', '.join(empty)}.")
        return self.verify(settings, values)
