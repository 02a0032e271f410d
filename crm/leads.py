"""The lead record kind: its rows (one per connection that brought a lead in), its sink, and its API
(`/api/v1/leads`), which shows each lead once per workspace with the CRM contact of the same email."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, ClassVar

import msgspec
from pydantic import BaseModel, Field
from sqlalchemy import (
    Select,
    String,
    Table,
    Text,
    bindparam,
    cast,
    column,
    delete,
    func,
    literal_column,
    or_,
    select,
    true,
    tuple_,
)
from sqlalchemy.dialects.postgresql import JSONB, insert
from sqlalchemy.orm import Session, aliased

from core.models import utcnow
from crm.kinds import RecordKind, RecordQuery
from crm.models import ContactEmailRow, ContactRow, LeadRow
from crm.records import Lead
from crm.sink import Counts, Owner, delete_by_external_id, encode_json, random_uuids
from crm.suppression import like_pattern, without_suppressed

LEADS: Table = LeadRow.__table__  # type: ignore[assignment]

CONTENT_FIELDS = (
    "page_id",
    "form_id",
    "ad_id",
    "campaign_id",
    "is_organic",
    "platform",
    "lead_created_at",
    "email",
    "phone",
    "phone_e164",
    "full_name",
    "first_name",
    "last_name",
    "answers",
)


def _content(lead: Lead) -> dict[str, Any]:
    return {
        "page_id": lead.page_id,
        "form_id": lead.form_id,
        "ad_id": lead.ad_id,
        "campaign_id": lead.campaign_id,
        "is_organic": lead.is_organic,
        "platform": lead.platform,
        "lead_created_at": lead.created_time,
        "email": lead.email,
        "phone": lead.phone,
        "phone_e164": lead.phone_e164,
        "full_name": lead.full_name,
        "first_name": lead.first_name,
        "last_name": lead.last_name,
        "answers": msgspec.to_builtins(list(lead.answers)),
    }


def addresses(lead: Lead) -> list[str]:
    """Every address a lead carries: its email, and any answer that is one."""
    found = [lead.email or ""]
    found += [value for answer in lead.answers for value in answer.values if "@" in value]
    return found


def _upsert() -> Any:
    """One statement for a page of leads, whatever its size: the rows travel as one JSON document (`lead_rows`)
    read with `jsonb_to_recordset`, so the statement is compiled once and cached; rendered as a multi-row VALUES,
    a batch of 50 leads cost 1,000 bound parameters to compile and send on every call. A lead already stored is
    rewritten only when something in it changed."""
    incoming = (
        func.jsonb_to_recordset(cast(bindparam("lead_rows", type_=Text), JSONB))
        .table_valued(*(column(name, LEADS.c[name].type) for name in ROW_FIELDS))
        .render_derived(name="incoming", with_types=True)
    )
    statement = insert(LEADS).from_select(list(ROW_FIELDS), select(*(incoming.c[name] for name in ROW_FIELDS)))
    new = statement.excluded
    changed = tuple_(*(LEADS.c[name] for name in CONTENT_FIELDS)).is_distinct_from(
        tuple_(*(new[name] for name in CONTENT_FIELDS))
    )
    return statement.on_conflict_do_update(
        index_elements=["connection_id", "resource", "external_id"],
        set_={**{name: new[name] for name in CONTENT_FIELDS}, "updated_at": new["updated_at"]},
        where=changed,
    ).returning(literal_column("xmax") == 0)


ROW_FIELDS = (
    "id",
    "workspace_id",
    "connection_id",
    "provider",
    "resource",
    "external_id",
    "full_pass_id",
    "created_at",
    "updated_at",
    *CONTENT_FIELDS,
)
UPSERT = _upsert()


class LeadSink:
    """Upserts a page of leads for one (connection, resource) by lead id, in the caller's transaction: a lead the
    poll and a webhook both bring is one row, rewritten only when something in it changed."""

    tables: ClassVar[tuple[Table, ...]] = (LEADS,)

    def __init__(self, session: Session, owner: Owner) -> None:
        self.session = session
        self.owner = owner

    @staticmethod
    def prepare(owner: Owner, records: Sequence[Lead]) -> None:
        return None

    def apply(
        self,
        records: Sequence[Lead],
        deleted_ids: Iterable[str],
        full_pass_id: str | None,
        ready: Any = None,
        fresh: bool = False,
    ) -> Counts:
        counts = Counts()
        records, counts.suppressed = without_suppressed(self.session, self.owner.workspace_id, records, addresses)
        latest = {lead.external_id: lead for lead in records}
        if latest:
            now = utcnow()
            owner = self.owner
            rows = [
                {
                    "id": key,
                    "workspace_id": owner.workspace_id,
                    "connection_id": owner.connection_id,
                    "provider": owner.provider,
                    "resource": owner.resource,
                    "external_id": lead.external_id,
                    "full_pass_id": full_pass_id,
                    "created_at": now,
                    "updated_at": now,
                    **_content(lead),
                }
                for key, lead in zip(random_uuids(len(latest)), latest.values(), strict=True)
            ]
            for (inserted,) in self.session.execute(UPSERT, {"lead_rows": encode_json(rows).decode()}):
                if inserted:
                    counts.created += 1
                else:
                    counts.updated += 1
        counts.deleted = delete_by_external_id(self.session, LEADS, self.owner, set(deleted_ids) - set(latest))
        return counts

    def delete_unseen(self, full_pass_id: str) -> int:
        """Nothing: Meta stops listing a lead 90 days after it was submitted, and the CRM keeps it."""
        return 0


class LeadFilters(BaseModel):
    email: str | None = Field(default=None, description="Only leads who gave this address.")
    page_id: str | None = Field(default=None, description="Only leads from this Page.")
    form_id: str | None = Field(default=None, description="Only leads from this form.")


def leads_query(query: RecordQuery) -> Select[Any]:
    """Each lead once per workspace: of the rows the reader may read for a lead id, the first by row id. Beside it,
    the first CRM contact the reader may read with the lead's email, joined at read time."""
    filters = query.filters
    assert isinstance(filters, LeadFilters)
    other = aliased(LeadRow)
    earlier = (
        select(other.id)
        .where(
            other.workspace_id == LeadRow.workspace_id,
            other.external_id == LeadRow.external_id,
            other.id < LeadRow.id,
            other.connection_id.in_(query.readable()),
        )
        .exists()
    )
    contact = (
        select(ContactRow.id, ContactRow.display_name)
        .join(ContactEmailRow, ContactEmailRow.contact_id == ContactRow.id)
        .where(
            ContactEmailRow.workspace_id == LeadRow.workspace_id,
            ContactEmailRow.email == func.lower(func.trim(LeadRow.email)),
            ContactRow.connection_id.in_(query.readable()),
        )
        .order_by(ContactRow.id)
        .limit(1)
        .lateral("contact")
    )
    chosen = select(LeadRow, contact.c.id, contact.c.display_name).outerjoin(contact, true()).where(~earlier)
    if filters.email:
        chosen = chosen.where(func.lower(func.trim(LeadRow.email)) == filters.email.strip().lower())
    if filters.page_id:
        chosen = chosen.where(LeadRow.page_id == filters.page_id)
    if filters.form_id:
        chosen = chosen.where(LeadRow.form_id == filters.form_id)
    return chosen


def lead_view(row: LeadRow, contact_id: Any = None, contact_name: str | None = None) -> dict[str, Any]:
    return {
        "id": str(row.id),
        "connection_id": str(row.connection_id),
        "provider": row.provider,
        "external_id": row.external_id,
        "leadgen_id": row.external_id,
        "page_id": row.page_id,
        "form_id": row.form_id,
        "ad_id": row.ad_id,
        "campaign_id": row.campaign_id,
        "is_organic": row.is_organic,
        "platform": row.platform,
        "created_time": row.lead_created_at.isoformat() if row.lead_created_at else None,
        "email": row.email,
        "phone": row.phone,
        "phone_e164": row.phone_e164,
        "full_name": row.full_name,
        "first_name": row.first_name,
        "last_name": row.last_name,
        "answers": row.answers,
        "contact": {"id": str(contact_id), "display_name": contact_name} if contact_id is not None else None,
        "created_at": row.created_at.isoformat(),
        "updated_at": row.updated_at.isoformat(),
    }


def forget_person(session: Session, workspace_id: str, address: str) -> dict[str, int]:
    """A lead that carries the address, as its email or in an answer, goes whole."""
    found = session.execute(
        delete(LeadRow).where(
            LeadRow.workspace_id == workspace_id,
            or_(
                func.lower(func.trim(LeadRow.email)) == address,
                func.lower(cast(LeadRow.answers, String)).like(like_pattern(address)),
            ),
        )
    )
    return {"leads": int(getattr(found, "rowcount", 0) or 0)}


KIND = RecordKind(
    name="lead",
    segment="leads",
    sink=LeadSink,
    table=LEADS,
    filters=LeadFilters,
    query=leads_query,
    view=lead_view,
    forget=forget_person,
)
