"""The write-time check every sink makes: a record carrying a suppressed address is skipped and counted (a lead by
its email or an answer; a contact by any of its addresses), an event keeps its place without the person; the list
is one workspace's, and it holds keyed hashes only."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from core.db import transaction
from core.models import Connection
from core.settings import Settings
from crm import suppression
from crm.events import Attendee, CalendarEvent, EventSink
from crm.kinds import kinds
from crm.models import LeadRow
from crm.records import Answer, Contact, EmailAddress, Lead
from crm.sink import Owner


def owner(session: Session, workspace: str, provider: str) -> Owner:
    connection = Connection(
        workspace_id=workspace, user_id="u", auth_provider=provider, provider_account_id=uuid.uuid4().hex
    )
    session.add(connection)
    session.flush()
    return Owner.of(connection)


def test_every_sink_skips_and_counts_what_carries_a_suppressed_address(
    sessions: sessionmaker[Session], settings: Settings
) -> None:
    suppression.configure(settings)
    workspace, tag = f"ws-suppress-{uuid.uuid4().hex[:6]}", uuid.uuid4().hex[:6]
    gone = f"Gone-{tag}@Example.test"
    with transaction(sessions) as session:
        assert suppression.suppress(session, workspace, gone) is True
        assert suppression.suppress(session, workspace, f" {gone.lower()} ") is False, "listed once"
        leads = [
            Lead("lead-1", "page", email=gone.upper()),
            Lead("lead-2", "page", answers=(Answer("work_email", "Work email?", (gone,)),)),
            Lead("lead-3", "page", email=f"kept-{tag}@example.test"),
        ]
        counts = kinds()["lead"].sink(session, owner(session, workspace, "facebook")).apply(leads, [], None, None)
        assert (counts.created, counts.suppressed) == (1, 2)
        stored = session.scalars(select(LeadRow.external_id).where(LeadRow.workspace_id == workspace)).all()
        assert stored == ["lead-3"]

        contacts = [Contact("people/1", emails=(EmailAddress(f"x-{tag}@example.test"), EmailAddress(gone)))]
        google = owner(session, workspace, "google")
        counts = kinds()["contact"].sink(session, google).apply(contacts, [], None, None, fresh=True)
        assert (counts.created, counts.suppressed) == (0, 1)

        event = CalendarEvent(
            "event-1",
            summary=f"with {gone.lower()}",
            organizer_email=gone,
            attendees=(Attendee(gone), Attendee(f"kept-{tag}@example.test")),
        )
        counts = EventSink(session, google).apply([event], [], None)
        assert (counts.created, counts.suppressed) == (1, 2)

        elsewhere = owner(session, f"{workspace}-other", "facebook")
        counts = kinds()["lead"].sink(session, elsewhere).apply([Lead("lead-1", "page", email=gone)], [], None, None)
        assert (counts.created, counts.suppressed) == (1, 0), "another workspace's list is its own"
        digests = session.scalars(
            select(suppression.SuppressionRow.digest).where(suppression.SuppressionRow.workspace_id == workspace)
        ).all()
        assert len(digests) == 1 and gone.lower().encode() not in digests[0]
