"""Reading the Cursor IDE's access token from its local state store (docs/extract-token.md)."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import sys
from pathlib import Path

TOKEN_KEY = "cursorAuth/accessToken"  # noqa: S105 (the row's key, not a secret)


class TokenNotFound(Exception):
    """No usable token in the store; the message says why (never the token)."""


def default_db_path(platform: str = sys.platform, home: Path | None = None) -> Path:
    """Where the IDE keeps `state.vscdb` on this OS (docs/cursor-protocol.md, "Tokens")."""
    home = home or Path.home()
    if platform == "darwin":
        base = home / "Library" / "Application Support"
    elif platform.startswith("win"):
        base = Path(os.environ.get("APPDATA", home / "AppData" / "Roaming"))
    else:
        base = Path(os.environ.get("XDG_CONFIG_HOME", home / ".config"))
    return base / "Cursor" / "User" / "globalStorage" / "state.vscdb"


def read_token(db: Path) -> str:
    if not db.is_file():
        raise TokenNotFound(f"{db} does not exist (is Cursor installed and signed in on this machine?)")
    # Read-only: the IDE may be running and owns this file.
    uri = f"{db.resolve().as_uri()}?mode=ro"
    try:
        with sqlite3.connect(uri, uri=True, timeout=5) as conn:
            row = conn.execute("SELECT value FROM ItemTable WHERE key = ?", (TOKEN_KEY,)).fetchone()
    except sqlite3.Error as err:
        raise TokenNotFound(f"{db} is not a readable Cursor state store ({err.__class__.__name__})") from None
    if row is None or not row[0]:
        raise TokenNotFound(f"{db} holds no {TOKEN_KEY} (sign in to Cursor first)")
    value = row[0].decode() if isinstance(row[0], bytes) else str(row[0])
    # Some builds store the value JSON-encoded.
    if value.startswith('"'):
        with contextlib.suppress(ValueError):
            value = str(json.loads(value))
    return value.strip()
