"""Google OAuth scopes the sandbox knows: short forms, the always-granted sign-in scopes, consent-page wording."""

from __future__ import annotations

AUTH = "https://www.googleapis.com/auth/"
EMAIL = AUTH + "userinfo.email"
PROFILE = AUTH + "userinfo.profile"
OPENID = "openid"
SHORT_FORMS = {"email": EMAIL, "profile": PROFILE}
SIGN_IN = frozenset({OPENID, EMAIL, PROFILE})
CONTACTS_READ = frozenset({AUTH + "contacts", AUTH + "contacts.readonly"})
DESCRIPTIONS = {
    OPENID: "Associate you with your personal info on Google",
    EMAIL: "See your primary Google Account email address",
    PROFILE: "See your personal info, including any personal info you've made publicly available",
    AUTH + "contacts.readonly": "See and download your contacts",
    AUTH + "contacts": "See, edit, download, and permanently delete your contacts",
    AUTH + "contacts.other.readonly": 'See and download contact info automatically saved in your "Other contacts"',
    AUTH + "calendar.readonly": "See and download any calendar you can access using your Google Calendar",
    AUTH
    + "calendar": "See, edit, share, and permanently delete all the calendars you can access using Google Calendar",
    AUTH + "calendar.events": "View and edit events on all your calendars",
    AUTH + "calendar.events.readonly": "View events on all your calendars",
    AUTH + "calendar.calendarlist.readonly": "See the list of Google calendars you're subscribed to",
    AUTH + "calendar.calendarlist": "See, add, and remove Google calendars you're subscribed to",
    AUTH + "calendar.events.owned.readonly": "See the events you own on your Google calendars",
}


def expand(scope: str) -> str:
    return SHORT_FORMS.get(scope, scope)


def parse(value: str) -> tuple[str, ...]:
    """Space-delimited scopes, short forms expanded, duplicates dropped, order kept."""
    return tuple(dict.fromkeys(expand(s) for s in value.split()))


def is_known(scope: str) -> bool:
    return scope == OPENID or scope.startswith(AUTH)


def describe(scope: str) -> str:
    return DESCRIPTIONS.get(scope, scope)
