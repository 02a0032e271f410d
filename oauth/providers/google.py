"""Google's OAuth 2.0 web-server flow: https://developers.google.com/identity/protocols/oauth2/web-server"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from oauth.config import Account, OAuthProviderConfig, subject


def _account(info: Mapping[str, Any]) -> Account:
    return Account(account_id=subject(info), email=info.get("email"))


GOOGLE = OAuthProviderConfig(
    name="google",
    display_name="Google",
    authorize_url="https://accounts.google.com/o/oauth2/v2/auth",
    token_url="https://oauth2.googleapis.com/token",  # noqa: S106 (a URL, not a secret)
    revoke_url="https://oauth2.googleapis.com/revoke",
    userinfo_url="https://openidconnect.googleapis.com/v1/userinfo",
    signin_scopes=("openid", "email"),
    authorize_params={"access_type": "offline", "prompt": "consent", "include_granted_scopes": "true"},
    scope_aliases={
        "email": "https://www.googleapis.com/auth/userinfo.email",
        "profile": "https://www.googleapis.com/auth/userinfo.profile",
    },
    account_from_userinfo=_account,
)
