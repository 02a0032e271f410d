"""The People API's `connections.list` answer, as far as the hub reads it.

msgspec decodes a page straight into these structs and skips every field not named here without building it:
a 1,000-person page (about 1 MB) decodes in a fifth of the time `json.loads` takes to build its dicts, and a
body of the wrong shape fails with the path of the offending field. The structs are frozen and hold only text,
flags and tuples of each other, so they cannot form reference cycles: `gc=False` keeps the garbage collector
from tracking (and repeatedly walking) the ~6,000 objects a page makes, which halved the decode.
"""

from __future__ import annotations

import msgspec


class FieldMetadata(msgspec.Struct, frozen=True, gc=False):
    primary: bool | None = None


class Name(msgspec.Struct, frozen=True, gc=False, rename="camel"):
    display_name: str | None = None
    given_name: str | None = None
    family_name: str | None = None
    metadata: FieldMetadata | None = None


class Item(msgspec.Struct, frozen=True, gc=False):
    """An email address or a phone number."""

    value: str | None = None
    type: str | None = None
    metadata: FieldMetadata | None = None


class Organization(msgspec.Struct, frozen=True, gc=False):
    name: str | None = None
    title: str | None = None
    metadata: FieldMetadata | None = None


class PersonMetadata(msgspec.Struct, frozen=True, gc=False, rename="camel"):
    deleted: bool | None = None
    previous_resource_names: tuple[str, ...] | None = None


class Person(msgspec.Struct, frozen=True, gc=False, rename="camel"):
    resource_name: str
    names: tuple[Name, ...] | None = None
    email_addresses: tuple[Item, ...] | None = None
    phone_numbers: tuple[Item, ...] | None = None
    organizations: tuple[Organization, ...] | None = None
    metadata: PersonMetadata | None = None


class ConnectionsPage(msgspec.Struct, frozen=True, gc=False, rename="camel"):
    connections: tuple[Person, ...] | None = None
    next_page_token: str | None = None
    next_sync_token: str | None = None
    total_items: int | None = None


PAGE_DECODER = msgspec.json.Decoder(ConnectionsPage)
