"""Sealed credentials: AES-256-GCM key ring, the credentials table, fresh tokens, revoke and erase."""
