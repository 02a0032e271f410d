"""Canonical records connectors produce, independent of any provider's shape."""

from __future__ import annotations

from dataclasses import dataclass, field

import msgspec


class EmailAddress(msgspec.Struct, frozen=True):
    """Stored as `{"value", "type", "primary"}`; msgspec encodes a contact's list of them in one C call."""

    value: str
    type: str | None = None
    primary: bool = False


class PhoneNumber(msgspec.Struct, frozen=True):
    value: str
    type: str | None = None
    primary: bool = False


@dataclass(frozen=True, slots=True)
class Contact:
    """A person from an address book; `previous_external_ids` are ids the provider used for it before."""

    external_id: str
    display_name: str | None = None
    given_name: str | None = None
    family_name: str | None = None
    emails: tuple[EmailAddress, ...] = ()
    phones: tuple[PhoneNumber, ...] = ()
    organization: str | None = None
    job_title: str | None = None
    previous_external_ids: tuple[str, ...] = field(default=())

    @property
    def primary_email(self) -> str | None:
        """The address marked primary, else the first; lower-cased for matching."""
        for email in self.emails:
            if email.primary:
                return email.value.strip().lower()
        return self.emails[0].value.strip().lower() if self.emails else None
