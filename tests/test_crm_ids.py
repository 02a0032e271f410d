"""New contact ids are made in bulk as text for COPY; they must still be distinct version-4 UUIDs."""

from __future__ import annotations

import uuid

from crm.sink import random_uuids


def test_bulk_ids_are_distinct_random_version_4_uuids() -> None:
    ids = random_uuids(50_000)
    parsed = [uuid.UUID(value) for value in ids]
    assert len(set(parsed)) == 50_000
    assert all(u.version == 4 and u.variant == uuid.RFC_4122 for u in parsed)
    assert random_uuids(0) == []
    # Every hexadecimal digit outside the fixed version and variant positions varies across ids.
    assert all(len({u.hex[i] for u in parsed[:2000]}) == 16 for i in range(32) if i not in (12, 16))
