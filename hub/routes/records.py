"""The records API: one route per record kind, mounted from the registry (`/api/v1/<segment>`).

No `from __future__ import annotations` here: FastAPI must see each kind's filter model in the endpoint's
signature as an object, not as the name of a local."""

import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query

from crm.feed import feed_page
from crm.kinds import BadCursor, RecordKind, RecordQuery, kinds, page
from hub.deps import CurrentUser, SessionDep

router = APIRouter(prefix="/api/v1", tags=["records"])


def lister(record_kind: RecordKind) -> Callable[..., dict[str, Any]]:
    """The endpoint for one kind: keyset pages of the records the user may read in their workspace, with the
    kind's own filters; with `updated_since`, the change feed (`crm.feed`). `connection_id` of a connection they
    may not read answers an empty page, as one that does not exist does: a filter narrows what they may read and
    tells nothing of the rest."""
    Filters = record_kind.filters

    def list_records(
        user: CurrentUser,
        session: SessionDep,
        filters: Annotated[Filters, Query()],  # type: ignore[valid-type]
        cursor: str | None = None,
        limit: int = Query(100, ge=1, le=1000),
        connection_id: uuid.UUID | None = None,
        updated_since: datetime | None = Query(
            None,
            description="The change feed: records changed at or after this moment and tombstones "
            '(`{"id", "deleted_at"}`) of records deleted since, ordered by (time, id); UTC when no zone is given.',
        ),
    ) -> dict[str, Any]:
        query = RecordQuery(user.workspace_id, user.user_id, cursor, limit, connection_id, filters)
        try:
            if updated_since is not None:
                return feed_page(session, record_kind, query, updated_since)
            return (record_kind.lister or page)(session, record_kind, query)
        except BadCursor as exc:
            raise HTTPException(400, str(exc)) from exc

    list_records.__name__ = f"list_{record_kind.segment}"
    return list_records


for _kind in kinds().values():
    router.add_api_route(f"/{_kind.segment}", lister(_kind), methods=["GET"], name=f"list_{_kind.segment}")
