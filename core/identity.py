"""Verifying the CRM's JWT: who the user is and which workspace every query is scoped to."""

from __future__ import annotations

import time
from dataclasses import dataclass

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import OctKey, RSAKey
from joserfc.jwt import JWTClaimsRegistry

from core.models import PRINCIPAL_ID_LENGTH
from core.settings import IdentitySettings


class IdentityError(Exception):
    """The token is missing, malformed, tampered with, expired or meant for someone else."""


@dataclass(frozen=True)
class Principal:
    user_id: str
    workspace_id: str
    expires_at: int


def _key(settings: IdentitySettings) -> OctKey | RSAKey:
    if settings.jwt_algorithm == "HS256":
        assert settings.jwt_secret is not None
        return OctKey.import_key(settings.jwt_secret.get_secret_value())
    assert settings.jwt_public_key is not None
    return RSAKey.import_key(settings.jwt_public_key)


def verify_token(token: str, settings: IdentitySettings) -> Principal:
    """Return the principal a CRM-issued token names, or raise IdentityError saying why not."""
    try:
        decoded = jwt.decode(token, _key(settings), algorithms=[settings.jwt_algorithm])
    except (JoseError, ValueError) as exc:
        raise IdentityError("the token's signature or format is not valid") from exc
    registry = JWTClaimsRegistry(
        leeway=30,
        exp={"essential": True},
        aud={"essential": True, "value": settings.audience},
        sub={"essential": True},
        workspace_id={"essential": True},
    )
    try:
        registry.validate(decoded.claims)
    except JoseError as exc:
        raise IdentityError(f"the token was refused: {exc.error} {exc.description or ''}".strip()) from exc
    sub, workspace = decoded.claims["sub"], decoded.claims["workspace_id"]
    if not isinstance(sub, str) or not isinstance(workspace, str) or not sub or not workspace:
        raise IdentityError("the token's sub and workspace_id must be non-empty strings")
    if max(len(sub), len(workspace)) > PRINCIPAL_ID_LENGTH:
        # Refused here, at sign-in, rather than when a connection or an audit entry fails to store them later.
        raise IdentityError(f"the token's sub and workspace_id must be no longer than {PRINCIPAL_ID_LENGTH} characters")
    return Principal(user_id=sub, workspace_id=workspace, expires_at=int(decoded.claims["exp"]))


def issue_token(secret: str, user_id: str, workspace_id: str, ttl_seconds: int, audience: str = "synchub") -> str:
    """Mint an HS256 token as the CRM would (for `synchub dev` and tests)."""
    now = int(time.time())
    claims = {
        "sub": user_id,
        "workspace_id": workspace_id,
        "aud": audience,
        "iat": now,
        "exp": now + ttl_seconds,
    }
    return jwt.encode({"alg": "HS256"}, claims, OctKey.import_key(secret))
