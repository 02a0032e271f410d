"""Verifying the CRM's JWTs: who the user is and which workspace every query is scoped to.

Two kinds: the ordinary token API callers send as `Authorization: Bearer` (`aud` = the audience setting), and the
sign-in token of a browser's sign-in link (`aud` = `synchub-signin`, at most 2 minutes, usable once)."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

import redis
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import OctKey, RSAKey
from joserfc.jwt import JWTClaimsRegistry

from core.models import PRINCIPAL_ID_LENGTH
from core.settings import IdentitySettings

SIGNIN_AUDIENCE = "synchub-signin"
SIGNIN_MAX_SECONDS = 120
LEEWAY_SECONDS = 30
USED_PREFIX = "synchub:signin:used:"


class IdentityError(Exception):
    """The token is missing, malformed, tampered with, expired, already used or meant for someone else."""


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
    """Return the principal a CRM-issued ordinary token names, or raise IdentityError saying why not."""
    return _principal(_claims(token, settings, settings.audience))


def verify_signin_token(token: str, settings: IdentitySettings, store: redis.Redis) -> Principal:
    """Return the principal a sign-in token names, and mark it used: the same token is refused from then on.

    It must carry `aud` = `synchub-signin`, `iat`, `exp` at most 2 minutes after `iat`, and a `jti`, which is kept
    in Redis until the token would have expired anyway."""
    claims = _claims(token, settings, SIGNIN_AUDIENCE, iat={"essential": True}, jti={"essential": True})
    issued, expires, jti = claims["iat"], claims["exp"], claims["jti"]
    if not isinstance(issued, int) or not isinstance(jti, str) or not jti:
        raise IdentityError("a sign-in token needs a numeric iat and a non-empty jti")
    if expires - issued > SIGNIN_MAX_SECONDS:
        raise IdentityError(f"a sign-in token may live at most {SIGNIN_MAX_SECONDS} seconds (exp - iat)")
    principal = _principal(claims)
    keep = max(1, int(expires) + LEEWAY_SECONDS - int(time.time()))
    if not store.set(f"{USED_PREFIX}{jti}", 1, nx=True, ex=keep):
        raise IdentityError("this sign-in link was already used; open synchub from the CRM again")
    return principal


def _claims(token: str, settings: IdentitySettings, audience: str, **essential: Any) -> dict[str, Any]:
    try:
        decoded = jwt.decode(token, _key(settings), algorithms=[settings.jwt_algorithm])
    except (JoseError, ValueError) as exc:
        raise IdentityError("the token's signature or format is not valid") from exc
    registry = JWTClaimsRegistry(
        leeway=LEEWAY_SECONDS,
        exp={"essential": True},
        aud={"essential": True, "value": audience},
        sub={"essential": True},
        workspace_id={"essential": True},
        **essential,
    )
    try:
        registry.validate(decoded.claims)
    except JoseError as exc:
        raise IdentityError(f"the token was refused: {exc.error} {exc.description or ''}".strip()) from exc
    return dict(decoded.claims)


def _principal(claims: dict[str, Any]) -> Principal:
    sub, workspace = claims["sub"], claims["workspace_id"]
    if not isinstance(sub, str) or not isinstance(workspace, str) or not sub or not workspace:
        raise IdentityError("the token's sub and workspace_id must be non-empty strings")
    if max(len(sub), len(workspace)) > PRINCIPAL_ID_LENGTH:
        # Refused here, at sign-in, rather than when a connection or an audit entry fails to store them later.
        raise IdentityError(f"the token's sub and workspace_id must be no longer than {PRINCIPAL_ID_LENGTH} characters")
    return Principal(user_id=sub, workspace_id=workspace, expires_at=int(claims["exp"]))


def issue_token(secret: str, user_id: str, workspace_id: str, ttl_seconds: int, audience: str = "synchub") -> str:
    """Mint an HS256 token as the CRM would (for `synchub dev`, the dev sign-in page and tests)."""
    now = int(time.time())
    claims = {
        "sub": user_id,
        "workspace_id": workspace_id,
        "aud": audience,
        "iat": now,
        "exp": now + ttl_seconds,
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode({"alg": "HS256"}, claims, OctKey.import_key(secret))


def issue_signin_token(secret: str, user_id: str, workspace_id: str, ttl_seconds: int = 60) -> str:
    """Mint an HS256 sign-in token as the CRM would for a sign-in link."""
    return issue_token(secret, user_id, workspace_id, min(ttl_seconds, SIGNIN_MAX_SECONDS), SIGNIN_AUDIENCE)
