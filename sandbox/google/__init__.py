"""The fake Google: OAuth 2.0 authorization server, OIDC userinfo and the People API, at Google's real paths."""
