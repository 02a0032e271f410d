"""The HTML Google shows in the browser: account chooser, consent screen and error pages, as plain forms."""

from __future__ import annotations

from collections.abc import Iterable
from html import escape

from starlette.responses import HTMLResponse

from sandbox.google.scopes import describe

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title></head>
<body>
{body}
</body></html>
"""
ACCOUNT_PATH = "/o/oauth2/v2/auth/account"
CONSENT_PATH = "/o/oauth2/v2/auth/consent"


def page(title: str, body: str, status_code: int = 200) -> HTMLResponse:
    return HTMLResponse(PAGE.format(title=escape(title), body=body), status_code=status_code)


def hidden(name: str, value: str) -> str:
    return f'<input type="hidden" name="{escape(name)}" value="{escape(value)}">'


def chooser(request_blob: str, client_id: str, accounts: Iterable[tuple[str, str]]) -> HTMLResponse:
    forms = "\n".join(
        f'<form method="post" action="{ACCOUNT_PATH}">{hidden("request", request_blob)}{hidden("account", email)}'
        f'<button type="submit">{escape(name)} &lt;{escape(email)}&gt;</button></form>'
        for email, name in accounts
    )
    body = f"<h1>Choose an account</h1>\n<p>to continue to {escape(client_id)}</p>\n{forms}"
    return page("Sign in - Google Accounts", body)


def scope_item(scope: str, checkbox: bool) -> str:
    text = escape(describe(scope))
    if not checkbox:
        return f"<li>{text}</li>"
    return f'<li><label><input type="checkbox" name="scope" value="{escape(scope)}"> {text}</label></li>'


def consent(
    request_blob: str,
    client_id: str,
    email: str,
    sign_in: Iterable[str],
    others: Iterable[str],
    checkboxes: bool,
    kept: Iterable[str] = (),
) -> HTMLResponse:
    granted = "".join(f"<li>{escape(describe(s))}</li>" for s in sign_in)
    asked = "".join(scope_item(s, checkboxes) for s in others)
    held = "".join(f"<li>{escape(describe(s))}</li>" for s in kept)
    already = (
        f'<p>You\'ve already given {escape(client_id)} access to:</p>\n<ul class="already-granted">{held}</ul>\n'
        if held
        else ""
    )
    lead = "Select what {0} can access" if checkboxes else "{0} wants to access your Google Account"
    body = (
        f"<h1>{escape(lead.format(client_id))}</h1>\n<p>{escape(email)}</p>\n"
        f'<form method="post" action="{CONSENT_PATH}">{hidden("request", request_blob)}{hidden("account", email)}\n'
        f'<ul class="sign-in">{granted}</ul>\n{already}<ul class="requested">{asked}</ul>\n'
        '<button type="submit" name="action" value="deny">Cancel</button>\n'
        '<button type="submit" name="action" value="allow">Continue</button>\n</form>'
    )
    return page("Sign in - Google Accounts", body)


def error_page(status_code: int, error: str, description: str) -> HTMLResponse:
    body = (
        "<h1>Access blocked: authorization error</h1>\n"
        f'<p class="description">{escape(description)}</p>\n'
        f'<p class="error">Error {status_code}: {escape(error)}</p>'
    )
    return page(f"Error {status_code} ({error})", body, status_code)
