"""Handling of secrets: hashing licenses, comparing in constant time, masking tokens for display."""

from __future__ import annotations

import hashlib
import hmac
import secrets


def hash_key(key: str) -> str:
    """The at-rest form of a license: SHA-256 hex (licenses are random 256-bit values, so no salt/KDF)."""
    return hashlib.sha256(key.encode()).hexdigest()


def keys_equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def new_license() -> str:
    return "sk-cg-" + secrets.token_urlsafe(32)


def mask(secret: str, keep: int = 4) -> str:
    """`eyJh…x9Qz` style: enough to tell two secrets apart, never enough to use one."""
    if len(secret) <= keep * 3:
        return "…"
    return f"{secret[:keep]}…{secret[-keep:]}"


def bearer(value: str | None) -> str | None:
    """The credential of an `authorization: Bearer <x>` value."""
    if not value:
        return None
    scheme, _, credential = value.strip().partition(" ")
    if scheme.lower() != "bearer" or not credential.strip():
        return None
    return credential.strip()
