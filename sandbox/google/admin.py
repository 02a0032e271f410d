"""Admin API for the fake Google under /_sandbox/google/: clients, accounts, contacts, grants, tokens, settings."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, Field, ValidationError

from sandbox.google.contacts import Contact, UnknownContact
from sandbox.google.data import PersonDataError
from sandbox.google.deps import GoogleDep
from sandbox.google.scopes import parse as parse_scopes
from sandbox.google.state import Account, GoogleSettings, GoogleState, OAuthClient, TokenKind
from sandbox.google.token import token_body

router = APIRouter(prefix="/_sandbox/google")


class ClientIn(BaseModel):
    client_id: str = Field(min_length=1)
    client_secret: str = Field(min_length=1)
    redirect_uris: list[str] = Field(min_length=1)


class AccountIn(BaseModel):
    email: str = Field(min_length=3)
    name: str = ""
    contacts: int = Field(default=0, ge=0, le=1_000_000)
    seed: int | None = Field(default=None, description="Defaults to the process seed.")


class ExpireIn(BaseModel):
    kind: TokenKind = "access"
    account: str | None = None
    client_id: str | None = None


class GrantIn(BaseModel):
    account: str
    client_id: str


class MintIn(BaseModel):
    account: str
    client_id: str
    scopes: list[str] = Field(min_length=1)
    offline: bool = True


def account_summary(account: Account) -> dict[str, Any]:
    return {"email": account.email, "name": account.name, "sub": account.sub, "contacts": len(account.book.people)}


def contact_summary(contact: Contact) -> dict[str, Any]:
    return {"resourceName": contact.resource_name, "etag": contact.etag}


def known_account(google: GoogleState, email: str) -> Account:
    account = google.accounts.get(email)
    if account is None:
        raise HTTPException(404, f"no account {email}")
    return account


def known_client(google: GoogleState, client_id: str) -> OAuthClient:
    client = google.clients.get(client_id)
    if client is None:
        raise HTTPException(404, f"no client {client_id}")
    return client


@router.post("/clients", status_code=201)
async def register_client(body: ClientIn, google: GoogleDep) -> dict[str, Any]:
    google.register_client(OAuthClient(body.client_id, body.client_secret, tuple(body.redirect_uris)))
    return body.model_dump()


@router.get("/clients")
async def list_clients(google: GoogleDep) -> list[dict[str, Any]]:
    return [{"client_id": c.client_id, "redirect_uris": list(c.redirect_uris)} for c in google.clients.values()]


@router.post("/accounts", status_code=201)
async def seed_account(body: AccountIn, google: GoogleDep) -> dict[str, Any]:
    seed = google.seed if body.seed is None else body.seed
    name = body.name or body.email.split("@")[0].title()
    return account_summary(google.seed_account(body.email, name, body.contacts, seed))


@router.get("/accounts")
async def list_accounts(google: GoogleDep) -> list[dict[str, Any]]:
    return [account_summary(a) for a in google.accounts.values()]


@router.post("/accounts/{email}/contacts", status_code=201)
async def add_contact(email: str, fields: dict[str, Any], google: GoogleDep) -> dict[str, Any]:
    book = known_account(google, email).book
    try:
        return contact_summary(book.add(fields, time.time()))
    except PersonDataError as error:
        raise HTTPException(400, str(error)) from None


@router.get("/accounts/{email}/contacts/{contact_id}")
async def get_contact(email: str, contact_id: str, google: GoogleDep) -> dict[str, Any]:
    try:
        contact = known_account(google, email).book.get(f"people/{contact_id}")
    except UnknownContact:
        raise HTTPException(404, f"no contact people/{contact_id}") from None
    return {**contact_summary(contact), **contact.fields, "metadata": contact.metadata(incremental=True)}


@router.patch("/accounts/{email}/contacts/{contact_id}")
async def update_contact(
    email: str, contact_id: str, fields: dict[str, Any], google: GoogleDep, rename: bool = False
) -> dict[str, Any]:
    book = known_account(google, email).book
    try:
        return contact_summary(book.update(f"people/{contact_id}", fields, rename, time.time()))
    except UnknownContact:
        raise HTTPException(404, f"no contact people/{contact_id}") from None
    except PersonDataError as error:
        raise HTTPException(400, str(error)) from None


@router.delete("/accounts/{email}/contacts/{contact_id}", status_code=204)
async def delete_contact(email: str, contact_id: str, google: GoogleDep) -> None:
    try:
        known_account(google, email).book.delete(f"people/{contact_id}")
    except UnknownContact:
        raise HTTPException(404, f"no contact people/{contact_id}") from None


@router.post("/accounts/{email}/sync-tokens/expire", status_code=204)
async def expire_sync_tokens(email: str, google: GoogleDep) -> None:
    known_account(google, email).book.expire_sync_tokens()


@router.post("/accounts/{email}/sync-tokens/forget", status_code=204)
async def forget_sync_tokens(email: str, google: GoogleDep) -> None:
    known_account(google, email).book.forget_sync_tokens()


@router.post("/tokens/expire")
async def expire_tokens(body: ExpireIn, google: GoogleDep) -> dict[str, int]:
    return {"expired": google.expire_tokens(body.kind, body.account, body.client_id)}


@router.get("/tokens")
async def list_tokens(
    google: GoogleDep, account: str | None = None, client_id: str | None = None, kind: TokenKind | None = None
) -> list[dict[str, Any]]:
    now = time.time()
    return [
        token.record(now)
        for token in google.tokens.values()
        if account in (None, token.account) and client_id in (None, token.client_id) and kind in (None, token.kind)
    ]


@router.post("/tokens", status_code=201)
async def mint_tokens(body: MintIn, google: GoogleDep) -> dict[str, Any]:
    """Tokens as if the user had consented to `scopes`, without the browser flow."""
    known_account(google, body.account)
    known_client(google, body.client_id)
    scopes = parse_scopes(" ".join(body.scopes))
    google.record_grant(body.account, body.client_id, scopes)
    refresh = google.issue_token("refresh", body.client_id, body.account, scopes) if body.offline else None
    access = google.issue_token("access", body.client_id, body.account, scopes, refresh.value if refresh else None)
    return token_body(google, access, refresh, None)


@router.post("/grants/revoke")
async def revoke_grant(body: GrantIn, google: GoogleDep) -> dict[str, int]:
    return {"revoked": google.revoke_grant(body.account, body.client_id)}


class NarrowIn(GrantIn):
    remove: list[str] = Field(min_length=1)


@router.post("/grants/narrow")
async def narrow_grant(body: NarrowIn, google: GoogleDep) -> dict[str, int]:
    known_account(google, body.account)
    return {"narrowed": google.narrow_grant(body.account, body.client_id, set(parse_scopes(" ".join(body.remove))))}


@router.get("/settings")
async def get_settings(google: GoogleDep) -> GoogleSettings:
    return google.settings


@router.patch("/settings")
async def update_settings(changes: dict[str, Any], google: GoogleDep) -> GoogleSettings:
    unknown = set(changes) - set(GoogleSettings.model_fields)
    if unknown:
        raise HTTPException(400, f"unknown settings: {', '.join(sorted(unknown))}")
    try:
        google.settings = GoogleSettings.model_validate({**google.settings.model_dump(), **changes})
    except ValidationError as error:
        raise HTTPException(422, error.errors(include_url=False)) from None
    return google.settings
