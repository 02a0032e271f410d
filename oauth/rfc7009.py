"""OAuth 2.0 Token Revocation (RFC 7009): the standard `revoke` hook."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from oauth.client import OAuthClient


def revoke(client: OAuthClient, token: str) -> bool:
    """POST the token to the revocation endpoint with the client's credentials; True once the provider confirmed
    it, or answered 400 `invalid_token`: the token is already dead."""
    with client.session() as session:
        response = session.revoke_token(client.config.revoke_url, token=token)
    if response.status_code == 200:
        return True
    return response.status_code == 400 and "invalid_token" in response.text
