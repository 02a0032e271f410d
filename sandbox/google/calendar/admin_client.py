"""The typed admin client's Google Calendar part (`SandboxAdmin.calendar`): calendars, event changes, bulk seeding,
sync-token expiry, channels, notifications and Calendar-shaped fault rules."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any, Literal, TypedDict
from urllib.parse import quote

from sandbox.google.calendar.errors import PREFIX, fault_text

Call = Callable[..., Any]


class CalendarSummary(TypedDict):
    id: str
    summary: str
    time_zone: str
    primary: bool
    access_role: str
    deleted: bool
    events: int
    seq: int
    sync_epoch: int


class ChannelRecord(TypedDict):
    id: str
    client_id: str
    account: str
    calendar_id: str
    resource_id: str
    resource_uri: str
    address: str
    token: str | None
    expiration_ms: int
    created: float
    stopped: float | None
    message_number: int
    live: bool


class NotificationRecord(TypedDict):
    id: int
    channel_id: str
    client_id: str
    account: str
    calendar_id: str
    address: str
    resource_state: Literal["sync", "exists", "not_exists"]
    message_number: int
    created: float
    state: Literal["pending", "retrying", "delivered", "failed", "dropped"]
    attempts: list[dict[str, Any]]


def calendar_fault(
    reason: Literal["rateLimitExceeded", "userRateLimitExceeded", "quotaExceeded", "backendError"],
    status: int = 403,
    times: int | None = 1,
    path_prefix: str = PREFIX,
) -> dict[str, Any]:
    """A FaultRule (for `SandboxAdmin.set_faults`) answering Calendar calls with that reason's error body."""
    return {"path_prefix": path_prefix, "status": status, "body": fault_text(status, reason), "times": times}


class CalendarAdmin:
    def __init__(self, call: Call) -> None:
        self.call = call

    @staticmethod
    def path(account: str, calendar: str | None = None, *rest: str) -> str:
        parts = [f"/google/calendar/accounts/{quote(account, safe='@')}/calendars"]
        if calendar is not None:
            parts.append(quote(calendar, safe="@"))
        return "/".join([*parts, *rest])

    def calendars(self, account: str) -> list[CalendarSummary]:
        result: list[CalendarSummary] = self.call("GET", self.path(account))
        return result

    def add_calendar(
        self,
        account: str,
        summary: str,
        time_zone: str = "Europe/London",
        calendar_id: str | None = None,
        access_role: str = "owner",
    ) -> CalendarSummary:
        body = {"summary": summary, "time_zone": time_zone, "id": calendar_id, "access_role": access_role}
        result: CalendarSummary = self.call("POST", self.path(account), json=body)
        return result

    def remove_calendar(self, account: str, calendar: str) -> None:
        self.call("DELETE", self.path(account, calendar))

    def add_event(self, account: str, calendar: str, fields: dict[str, Any]) -> dict[str, Any]:
        """`fields`: summary, description, location, start, end (EventDateTime), recurrence, attendees (emails or
        {email, responseStatus, displayName}), status, and optionally id, iCalUID, organizer. Returns the event."""
        result: dict[str, Any] = self.call("POST", self.path(account, calendar, "events"), json=fields)
        return result

    def event(self, account: str, calendar: str, event_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self.call("GET", self.path(account, calendar, "events", event_id))
        return result

    def update_event(self, account: str, calendar: str, event_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        """Change an event (a new start and end moves it)."""
        result: dict[str, Any] = self.call("PATCH", self.path(account, calendar, "events", event_id), json=changes)
        return result

    def cancel_event(self, account: str, calendar: str, event_id: str) -> None:
        """Delete an event (a series with its exceptions): it stays as a cancelled event for incremental syncs."""
        self.call("DELETE", self.path(account, calendar, "events", event_id))

    def move_event(self, account: str, calendar: str, event_id: str, to_calendar: str) -> dict[str, Any]:
        """events.move: the source calendar keeps a cancelled event, the target gets it."""
        path = self.path(account, calendar, "events", event_id, "move")
        result: dict[str, Any] = self.call("POST", path, json={"calendar": to_calendar})
        return result

    def change_occurrence(
        self, account: str, calendar: str, series_id: str, original_start: str, changes: dict[str, Any]
    ) -> dict[str, Any]:
        """Change one occurrence (by its RFC 3339 original start, or its local day yyyy-mm-dd): the exception."""
        path = self.path(account, calendar, "events", series_id, "occurrences")
        result: dict[str, Any] = self.call("POST", path, json={"original_start": original_start, "changes": changes})
        return result

    def delete_occurrence(self, account: str, calendar: str, series_id: str, original_start: str) -> dict[str, Any]:
        """Delete one occurrence: a cancelled exception of the series."""
        path = self.path(account, calendar, "events", series_id, "occurrences")
        result: dict[str, Any] = self.call("POST", path, json={"original_start": original_start, "changes": None})
        return result

    def seed_events(
        self,
        account: str,
        calendar: str,
        count: int,
        first_day: date | None = None,
        days: int = 365,
        attendees: list[str] | None = None,
    ) -> dict[str, Any]:
        """`count` single events spread over `days` days (by default from 180 days ago), fast (10k in well under
        a second); returns {"seeded", "seconds"}."""
        body = {
            "count": count,
            "first_day": first_day.isoformat() if first_day else None,
            "days": days,
            "attendees": attendees or [],
        }
        result: dict[str, Any] = self.call("POST", self.path(account, calendar, "events", "seed"), json=body)
        return result

    def expire_sync_tokens(self, account: str, calendar: str | None = None) -> None:
        """One calendar's event sync tokens, or (no calendar) all of the account's, now answer 410 fullSyncRequired."""
        if calendar is None:
            self.call("POST", f"/google/calendar/accounts/{quote(account, safe='@')}/sync-tokens/expire")
        else:
            self.call("POST", self.path(account, calendar, "sync-tokens", "expire"))

    def channels(self, account: str | None = None) -> list[ChannelRecord]:
        params = {"account": account} if account else {}
        result: list[ChannelRecord] = self.call("GET", "/google/calendar/channels", params=params)
        return result

    def expire_channel(self, channel_id: str) -> None:
        self.call("POST", f"/google/calendar/channels/{quote(channel_id, safe='')}/expire")

    def notify(self, channel_id: str, count: int = 1) -> list[NotificationRecord]:
        """`count` `exists` messages on a live channel (none on a stopped or expired one)."""
        path = f"/google/calendar/channels/{quote(channel_id, safe='')}/notify"
        result: list[NotificationRecord] = self.call("POST", path, params={"count": count})
        return result

    def notifications(
        self, channel_id: str | None = None, account: str | None = None, after: int = 0
    ) -> list[NotificationRecord]:
        params: dict[str, Any] = {"after": after}
        params.update({k: v for k, v in {"channel_id": channel_id, "account": account}.items() if v})
        result: list[NotificationRecord] = self.call("GET", "/google/calendar/notifications", params=params)
        return result

    def settings(self, **changes: Any) -> dict[str, Any]:
        """Change Google settings (the calendar_* ones live there too); returns all of them."""
        result: dict[str, Any] = self.call("PATCH", "/google/settings", json=changes)
        return result
