"""Provider OAuth configurations by auth provider name."""

from __future__ import annotations

from oauth.config import OAuthProviderConfig
from oauth.providers.google import GOOGLE

PROVIDERS: dict[str, OAuthProviderConfig] = {config.name: config for config in (GOOGLE,)}
