"""`cursorgate secrets rotate`: every credential in the database opened with the current
CURSORGATE_SECRET_KEY and sealed again with CURSORGATE_NEW_SECRET_KEY. Run it with core stopped
(a running core would write credentials back under the old key), then start core with the new key."""

from __future__ import annotations

import os
import sys

from core.config import CoreSettings
from core.store.repo import Store
from core.store.secretbox import SecretBox, SecretKeyError


async def rotate(decrypt: bool = False) -> int:
    settings = CoreSettings()
    old = settings.secret_key.get_secret_value() if settings.secret_key else None
    new = os.environ.get("CURSORGATE_NEW_SECRET_KEY") or None
    if new is None and not decrypt:
        print(
            "cursorgate: set CURSORGATE_NEW_SECRET_KEY (or pass --decrypt to store credentials in clear)",
            file=sys.stderr,
        )
        return 2
    try:
        box = SecretBox(new)
        store = await Store.open(settings.database_url, old)
    except SecretKeyError as err:
        print(f"cursorgate: {err}", file=sys.stderr)
        return 2
    try:
        changed = await store.reseal(box)
    finally:
        await store.close()
    state = "sealed with the new key" if new else "stored in clear"
    print(f"cursorgate: {changed} credential(s) {state}; start core with the new CURSORGATE_SECRET_KEY")
    return 0
