"""Credentials at rest: sealed with AES-256-GCM (the `cryptography` package) when the operator sets
CURSORGATE_SECRET_KEY.

What it protects: a copy of the database (a backup, a stolen disk, a leaked file) does not give
away Cursor tokens, refresh tokens or API keys without the key. What it does not protect: a running
core holds the key and the tokens in memory, and whoever can read core's environment has the key.
"""

from __future__ import annotations

import base64
import hashlib
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

PREFIX = "enc:v1:"
NONCE_BYTES = 12
# A sealed value is bound to its column, so a value moved to another column fails to open.
MIN_KEY_CHARS = 16


class SecretKeyError(Exception):
    """The key is missing, too short, or not the one the data was sealed with. The message is
    safe to show: it never contains a secret."""


def sealed(value: str) -> bool:
    return value.startswith(PREFIX)


class SecretBox:
    def __init__(self, key: str | None) -> None:
        if key is not None and len(key) < MIN_KEY_CHARS:
            raise SecretKeyError(f"CURSORGATE_SECRET_KEY must be at least {MIN_KEY_CHARS} characters.")
        # The key is an operator's string; SHA-256 turns it into the 256-bit AES key. It must be
        # random and long (e.g. `openssl rand -base64 32`): no KDF slows a guess at a weak one.
        self._aead = AESGCM(hashlib.sha256(key.encode()).digest()) if key else None

    @property
    def enabled(self) -> bool:
        return self._aead is not None

    def seal(self, value: str, column: str) -> str:
        if self._aead is None or not value or sealed(value):
            return value
        nonce = os.urandom(NONCE_BYTES)
        data = self._aead.encrypt(nonce, value.encode(), column.encode())
        return PREFIX + base64.urlsafe_b64encode(nonce + data).decode()

    def open(self, value: str, column: str) -> str:
        if not sealed(value):
            return value
        if self._aead is None:
            raise SecretKeyError(
                "The database holds credentials sealed with CURSORGATE_SECRET_KEY, and the key is not "
                "set. Set it (the same key as before) to start; nothing was changed."
            )
        raw = base64.urlsafe_b64decode(value[len(PREFIX) :])
        try:
            return self._aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], column.encode()).decode()
        except InvalidTag:
            raise SecretKeyError(
                "CURSORGATE_SECRET_KEY does not open the credentials in the database (a different key "
                "sealed them); nothing was changed."
            ) from None
