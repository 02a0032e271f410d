"""A real Radicale for `synchub dev`: a demo user with two calendars of sample events, seeded as files in its
storage folder the first time (later changes are kept), on a loopback port."""

from __future__ import annotations

import json
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

DEMO_USER = "demo"
DEMO_PASSWORD = "demo-app-password"  # a local demo server's, printed for the person trying the hub
CALENDARS = {
    "work": ("Work", "#1f77b4", ("Planning", "Customer call", "Design review", "1:1", "Release")),
    "home": ("Home", "#2ca02c", ("Dentist", "Football", "Dinner with Ada", "Plumber", "Piano lesson")),
}


def argv(folder: Path, port: int) -> list[str]:
    return [
        sys.executable, "-m", "radicale", "--config", "",
        "--server-hosts", f"127.0.0.1:{port}",
        "--auth-type", "htpasswd",
        "--auth-htpasswd-filename", str(folder / "users"),
        "--auth-htpasswd-encryption", "plain",
        "--auth-delay", "0",
        "--rights-type", "owner_only",
        "--storage-filesystem-folder", str(folder / "collections"),
        "--logging-level", "warning",
    ]  # fmt: skip


def event(uid: str, summary: str, start: datetime) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return "\r\n".join(
        [
            "BEGIN:VCALENDAR",
            "VERSION:2.0",
            "PRODID:-//synchub dev//EN",
            "BEGIN:VEVENT",
            f"UID:{uid}",
            f"DTSTAMP:{stamp}",
            f"DTSTART:{start.strftime('%Y%m%dT%H%M%SZ')}",
            f"DTEND:{(start + timedelta(hours=1)).strftime('%Y%m%dT%H%M%SZ')}",
            f"SUMMARY:{summary}",
            "END:VEVENT",
            "END:VCALENDAR",
            "",
        ]
    )


def seed(folder: Path, today: date | None = None) -> None:
    """The demo user's password file, and, unless they exist already, its calendars with a week of events."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "users").write_text(f"{DEMO_USER}:{DEMO_PASSWORD}\n")
    home = folder / "collections" / "collection-root" / DEMO_USER
    if home.exists():
        return
    first = today or datetime.now(UTC).date()
    for slug, (name, color, summaries) in CALENDARS.items():
        calendar = home / slug
        calendar.mkdir(parents=True)
        props = {"tag": "VCALENDAR", "D:displayname": name, "ICAL:calendar-color": color}
        (calendar / ".Radicale.props").write_text(json.dumps(props))
        for number, summary in enumerate(summaries):
            start = datetime(first.year, first.month, first.day, 9 + number, tzinfo=UTC) + timedelta(days=number)
            uid = f"{slug}-{number}@dev.synchub"
            (calendar / f"{slug}-{number}.ics").write_text(event(uid, summary, start), newline="")


def note(url: str) -> str:
    """What the dev hub's connect form says to type."""
    return f"This dev hub runs a Radicale: server URL {url}, username {DEMO_USER}, app password {DEMO_PASSWORD}."
