"""One account's contacts: live people, tombstones, the change log behind sync tokens, and listing snapshots."""

from __future__ import annotations

import base64
import hashlib
import random
from bisect import bisect_right
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sandbox.google.data import Fields, PersonDataError, normalise

LISTINGS_KEPT = 32
SORT_ORDERS = ("LAST_MODIFIED_ASCENDING", "LAST_MODIFIED_DESCENDING", "FIRST_NAME_ASCENDING", "LAST_NAME_ASCENDING")


@dataclass
class Contact:
    resource_name: str
    source_id: str
    fields: Fields
    etag: str = ""
    source_etag: str = ""
    update_time: str = ""
    previous_names: list[str] = field(default_factory=list)

    def body(self, mask: frozenset[str], incremental: bool) -> dict[str, Any]:
        person: dict[str, Any] = {"resourceName": self.resource_name, "etag": self.etag}
        person.update((name, items) for name, items in self.fields.items() if name in mask)
        if "metadata" in mask:
            person["metadata"] = self.metadata(incremental)
        return person

    def metadata(self, incremental: bool) -> dict[str, Any]:
        source = {"type": "CONTACT", "id": self.source_id, "etag": self.source_etag, "updateTime": self.update_time}
        metadata: dict[str, Any] = {"sources": [source], "objectType": "PERSON"}
        if incremental and self.previous_names:
            metadata["previousResourceNames"] = list(self.previous_names)
        return metadata

    def name_key(self, part: str) -> tuple[bool, str]:
        value = self.fields.get("names", [{}])[0].get(part, "")
        return (not value, value.casefold())


@dataclass(frozen=True)
class Tombstone:
    resource_name: str
    source_id: str
    etag: str

    def body(self, mask: frozenset[str], incremental: bool) -> dict[str, Any]:
        source = {"type": "CONTACT", "id": self.source_id}
        return {
            "resourceName": self.resource_name,
            "etag": self.etag,
            "metadata": {"sources": [source], "deleted": True},
        }


@dataclass(frozen=True)
class Listing:
    """A snapshot of resource names served page by page; `seq` and `origin` feed the sync token at its end."""

    names: list[str]
    seq: int
    origin: float
    incremental: bool


SORT_KEYS: dict[str, Callable[[Contact], Any]] = {
    "FIRST_NAME_ASCENDING": lambda c: c.name_key("givenName"),
    "LAST_NAME_ASCENDING": lambda c: c.name_key("familyName"),
}


def rfc3339(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{int(epoch * 1000) % 1000:03d}Z"


def digest(*parts: object) -> str:
    raw = hashlib.blake2b(":".join(map(str, parts)).encode(), digest_size=18).digest()
    return base64.b64encode(raw).decode()


class UnknownContact(KeyError):
    """No live contact has that resource name."""


class ContactBook:
    """Dict order of `people` is last-modified ascending: an update moves a contact to the end."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.people: dict[str, Contact] = {}
        self.tombstones: dict[str, Tombstone] = {}
        self.change_seqs: list[int] = []
        self.change_names: list[str] = []
        self.seq = 0
        self.sync_generation = 0
        self.sync_epoch = 0
        self.listings: OrderedDict[str, Listing] = OrderedDict()
        self.listing_counter = 0

    def new_resource_name(self) -> str:
        while (name := f"people/c{self.rng.getrandbits(62)}") in self.people or name in self.tombstones:
            continue
        return name

    def touch(self, contact: Contact, when: float) -> Contact:
        self.seq += 1
        contact.etag = "%" + digest(contact.resource_name, self.seq)
        contact.source_etag = "#" + digest(contact.source_id, self.seq)[:16]
        contact.update_time = rfc3339(when)
        self.people.pop(contact.resource_name, None)
        self.people[contact.resource_name] = contact
        self.record(contact.resource_name)
        return contact

    def record(self, resource_name: str) -> None:
        self.change_seqs.append(self.seq)
        self.change_names.append(resource_name)

    def add(self, raw: dict[str, Any], when: float) -> Contact:
        source_id = f"{self.rng.getrandbits(60):x}"
        contact = Contact(self.new_resource_name(), source_id, normalise(raw, source_id))
        return self.touch(contact, when)

    def get(self, resource_name: str) -> Contact:
        try:
            return self.people[resource_name]
        except KeyError:
            raise UnknownContact(resource_name) from None

    def update(self, resource_name: str, raw: dict[str, Any], rename: bool, when: float) -> Contact:
        """Replace the given fields (an empty list removes one); `rename` gives the contact a new resource name."""
        contact = self.get(resource_name)
        changed = {**contact.fields, **normalise(raw, contact.source_id)}
        fields = {name: items for name, items in changed.items() if raw.get(name, items)}
        if not fields:
            raise PersonDataError("a contact needs at least one field")
        contact.fields = fields
        if rename:
            del self.people[resource_name]
            contact.previous_names.append(resource_name)
            contact.resource_name = self.new_resource_name()
        return self.touch(contact, when)

    def delete(self, resource_name: str) -> Tombstone:
        contact = self.people.pop(resource_name, None)
        if contact is None:
            raise UnknownContact(resource_name)
        self.seq += 1
        tombstone = Tombstone(resource_name, contact.source_id, "%" + digest(resource_name, self.seq))
        self.tombstones[resource_name] = tombstone
        self.record(resource_name)
        return tombstone

    def changed_since(self, seq: int) -> list[str]:
        """Resource names changed after `seq`, each once, in the order of its latest change."""
        start = bisect_right(self.change_seqs, seq)
        latest = dict.fromkeys(reversed(self.change_names[start:]))
        return list(reversed(latest))

    def ordered_names(self, sort_order: str) -> list[str]:
        if sort_order == "LAST_MODIFIED_DESCENDING":
            return list(reversed(self.people))
        if sort_order in SORT_KEYS:
            return [c.resource_name for c in sorted(self.people.values(), key=SORT_KEYS[sort_order])]
        return list(self.people)

    def open_listing(self, names: list[str], origin: float, incremental: bool) -> str:
        self.listing_counter += 1
        listing_id = str(self.listing_counter)
        self.listings[listing_id] = Listing(names, self.seq, origin, incremental)
        while len(self.listings) > LISTINGS_KEPT:
            self.listings.popitem(last=False)
        return listing_id

    def listing(self, listing_id: str) -> Listing | None:
        listing = self.listings.get(listing_id)
        if listing is not None:
            self.listings.move_to_end(listing_id)
        return listing

    def page(self, listing: Listing, offset: int, size: int, mask: frozenset[str]) -> list[dict[str, Any]]:
        """Bodies of one page, O(page size); people deleted since the snapshot are skipped in full listings."""
        bodies = []
        for name in listing.names[offset : offset + size]:
            record = self.people.get(name) or (self.tombstones.get(name) if listing.incremental else None)
            if record is not None:
                bodies.append(record.body(mask, listing.incremental))
        return bodies

    def expire_sync_tokens(self) -> None:
        self.sync_generation += 1

    def forget_sync_tokens(self) -> None:
        """Every sync token issued so far becomes unknown: refused as invalid, not as expired."""
        self.sync_epoch += 1
