"""Cursor access tokens: what users paste, and the JWT Cursor wants."""

from __future__ import annotations

import base64
import binascii
import json
from urllib.parse import unquote


class InvalidToken(ValueError):
    """The value is neither a JWT nor a WorkosCursorSessionToken cookie value."""


def normalize_token(value: str) -> str:
    """Accept a raw JWT or the `WorkosCursorSessionToken` cookie value and return the JWT.

    The cookie value is `user_<id>::<jwt>`, usually URL-encoded as `user_<id>%3A%3A<jwt>`.
    A leading `Bearer ` or `WorkosCursorSessionToken=` is tolerated.
    """
    token = value.strip()
    for prefix in ("Bearer ", "bearer ", "WorkosCursorSessionToken="):
        if token.startswith(prefix):
            token = token[len(prefix) :].strip()
    token = unquote(token)
    if "::" in token:
        token = token.split("::", 1)[1]
    if token.count(".") != 2 or not all(token.split(".")):
        raise InvalidToken("not a JWT or a WorkosCursorSessionToken value")
    return token


def jwt_claims(token: str) -> dict[str, object]:
    """The unverified payload of a JWT (for expiry and user id display); {} if unreadable."""
    try:
        payload = token.split(".")[1]
        data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError, binascii.Error):
        return {}
    return data if isinstance(data, dict) else {}
