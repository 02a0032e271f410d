"""Push channels: `events.watch` per chosen calendar while it is selected, `channels.stop` when it is not, and the
notifications Google POSTs (empty bodies, everything in `X-Goog-*` headers).

A notification carries no change: it asks for the calendar's incremental sync, a few seconds later so that a
burst of them becomes one run. The `sync` message a new channel starts with is recorded and ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

from connectors.base import Delivery, OpenChannel, Page, StreamContext, WebhookKeys
from connectors.google_calendar.stream import api, call
from connectors.google_calendar.wire import CHANNEL_DECODER, EMPTY_DECODER
from core.errors import ConnectorError

CHANNEL_ID = "x-goog-channel-id"
CHANNEL_TOKEN = "x-goog-channel-token"  # noqa: S105 (a header name)
MESSAGE_NUMBER = "x-goog-message-number"
RESOURCE_STATE = "x-goog-resource-state"
RESOURCE_ID = "x-goog-resource-id"


class CalendarChannels:
    """The lifecycle of a calendar: a channel is opened when it is selected (if the hub can be reached over
    https, or a dev setting allows http), every live one is stopped when it is deselected or disconnected."""

    def selected(self, ctx: StreamContext) -> None:
        if ctx.channels is None or ctx.resource is None:
            return
        open_channel(ctx)

    def deselected(self, ctx: StreamContext) -> None:
        if ctx.channels is None or ctx.resource is None:
            return
        for channel in ctx.channels.live():
            stop_channel(ctx, channel.id, channel.provider_resource_id)

    def renew(self, ctx: StreamContext, old: OpenChannel) -> None:
        """Open the new channel, then stop the old one: a notification always has a live channel to come by."""
        open_channel(ctx)
        stop_channel(ctx, old.id, old.provider_resource_id)

    def stop(self, ctx: StreamContext, old: OpenChannel) -> None:
        stop_channel(ctx, old.id, old.provider_resource_id)


def open_channel(ctx: StreamContext) -> str:
    """events.watch on ctx.resource; the channel is kept (its token hashed) before this returns. Its id."""
    assert ctx.channels is not None and ctx.resource is not None
    channel_id, token = ctx.channels.new()
    ttl = int(getattr(ctx.settings, "channel_ttl_seconds", 604800))
    body = {
        "id": channel_id,
        "type": "web_hook",
        "address": ctx.channels.address,
        "token": token,
        "params": {"ttl": str(ttl)},
    }
    events = api(ctx, "events")
    calendar = ctx.resource.external_id
    answer = call(ctx, lambda: events.watch(calendarId=calendar, body=body), CHANNEL_DECODER)
    expires = (
        datetime.fromtimestamp(int(answer.expiration) / 1000, UTC)
        if answer.expiration is not None
        else datetime.now(UTC) + timedelta(seconds=ttl)
    )
    ctx.channels.opened(channel_id, token, answer.resource_id, expires)
    return channel_id


def stop_channel(ctx: StreamContext, channel_id: str, provider_resource_id: str | None) -> None:
    """channels.stop; a channel Google no longer knows (404) is stopped as far as the hub cares."""
    assert ctx.channels is not None
    channels = api(ctx, "channels")
    body = {"id": channel_id, "resourceId": provider_resource_id or ""}
    try:
        call(ctx, lambda: channels.stop(body=body), EMPTY_DECODER)
    except ConnectorError as exc:
        if "404" not in str(exc):
            raise
    ctx.channels.stopped(channel_id)


class CalendarNotifications:
    """The webhook side. Google signs nothing: a notification is trusted when its channel id names a live channel
    and its token matches the one kept (hashed) for it, which the receiver checks (`channel`)."""

    sync_delay_seconds = 1.0
    """How long a requested sync waits for more notifications of the same calendar to join it."""

    def handshake(self, query: Mapping[str, str], keys: WebhookKeys) -> str | None:
        return None

    def verify(self, headers: Mapping[str, str], body: bytes, keys: WebhookKeys) -> bool:
        return True  # the channel's token is checked by the receiver against the kept hash

    def channel(self, headers: Mapping[str, str]) -> tuple[str, str]:
        """The channel id and token a notification names; raises ValueError without a channel id."""
        channel_id = headers.get(CHANNEL_ID, "")
        if not channel_id or len(channel_id) > 64:
            raise ValueError("a notification names its channel")
        return channel_id, headers.get(CHANNEL_TOKEN, "")

    def notification(self, headers: Mapping[str, str], route_key: str) -> Delivery:
        """One delivery per notification, recognised again by (channel, message number); the `sync` message is
        stored as ignored."""
        channel_id, _ = self.channel(headers)
        number = headers.get(MESSAGE_NUMBER, "")
        state = headers.get(RESOURCE_STATE, "")
        if not number.isdigit():
            raise ValueError("a notification has a message number")
        payload = {"channel": channel_id, "state": state}
        return Delivery(f"{channel_id}:{number}", route_key, payload, ignored=state == "sync")

    def split(self, body: bytes) -> list[Delivery]:
        raise ValueError("Google Calendar's notifications are read from their headers")

    def process(self, delivery: Delivery, ctx: StreamContext) -> Page | None:
        return None  # sync the calendar
