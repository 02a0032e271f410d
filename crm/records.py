"""Canonical records connectors produce, independent of any provider's shape."""

from __future__ import annotations

from datetime import datetime

import msgspec


class EmailAddress(msgspec.Struct, frozen=True, gc=False):
    """Stored as `{"value", "type", "primary"}`; msgspec encodes a contact's list of them in one C call."""

    value: str
    type: str | None = None
    primary: bool = False


class PhoneNumber(msgspec.Struct, frozen=True, gc=False):
    value: str
    type: str | None = None
    primary: bool = False


class Contact(msgspec.Struct, frozen=True, gc=False):
    """A person from an address book; `previous_external_ids` are ids the provider used for it before.

    Records are frozen msgspec Structs: built in C (ten times faster than a frozen dataclass, at 1,000 per page),
    and, holding only text, flags and tuples of each other, they cannot form cycles, so the garbage collector
    does not track them (`gc=False`).
    """

    external_id: str
    display_name: str | None = None
    given_name: str | None = None
    family_name: str | None = None
    emails: tuple[EmailAddress, ...] = ()
    phones: tuple[PhoneNumber, ...] = ()
    organization: str | None = None
    job_title: str | None = None
    previous_external_ids: tuple[str, ...] = ()

    @property
    def primary_email(self) -> str | None:
        """The address marked primary, else the first; lower-cased for matching."""
        for email in self.emails:
            if email.primary:
                return email.value.strip().lower()
        return self.emails[0].value.strip().lower() if self.emails else None


class Answer(msgspec.Struct, frozen=True, gc=False):
    """One answer of a lead form, kept with its question: the form's key for it and the words it was asked in."""

    key: str
    question: str
    values: tuple[str, ...] = ()


class Lead(msgspec.Struct, frozen=True, gc=False):
    """A lead from a lead form: who (standard fields), where from (Page, form, ad, campaign) and every other answer.

    `phone` is as the person typed it; `phone_e164` only when it parses without guessing a country.
    """

    external_id: str
    page_id: str
    form_id: str | None = None
    ad_id: str | None = None
    campaign_id: str | None = None
    is_organic: bool | None = None
    platform: str | None = None
    created_time: datetime | None = None
    email: str | None = None
    phone: str | None = None
    phone_e164: str | None = None
    full_name: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    answers: tuple[Answer, ...] = ()
