"""Google Calendar as the sandbox plays it, in the shape the connector contract asks of a provider: records are
single events on the account's primary calendar."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from sandbox.admin_client import SandboxAdmin
from tests.contract import Grant
from tests.google.people_sandbox import PeopleSandbox, consent


class CalendarSandbox(PeopleSandbox):
    def __init__(self, url: str, admin: SandboxAdmin) -> None:
        super().__init__(url, admin)
        self.day = 0

    def seed(self, capability: str, records: int) -> str:
        email = f"contract-{uuid.uuid4().hex[:10]}@sandbox.test"
        self.admin.seed_account(email, contacts=0, name="Contract Person")
        for _ in range(records):
            self.add(capability, email)
        return email

    def add(self, capability: str, account: str) -> str:
        self.day += 1
        start = datetime.now(UTC).replace(microsecond=0) + timedelta(days=self.day % 300, hours=1)
        event = self.admin.calendar.add_event(
            account,
            account,
            {
                "summary": f"Event {self.day}",
                "start": {"dateTime": start.isoformat()},
                "end": {"dateTime": (start + timedelta(hours=1)).isoformat()},
            },
        )
        return str(event["id"])

    def delete(self, capability: str, account: str, external_id: str) -> None:
        self.admin.calendar.cancel_event(account, account, external_id)

    def expire_cursor(self, capability: str, account: str) -> None:
        self.admin.calendar.expire_sync_tokens(account)

    def grant(self, account: str, scopes: Sequence[str]) -> Grant:
        return consent(self.admin, self.client, account, scopes)
