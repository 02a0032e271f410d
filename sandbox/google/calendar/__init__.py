"""The fake Google Calendar API v3: calendars, events, push channels, admin."""
