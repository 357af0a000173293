"""Issue 14, finding 6: the SQLite database (Cursor tokens inside) is private to core's user."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from core.licensing.licenses import seed_license
from core.store import Store


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_new_database_is_0600_in_a_0700_directory(tmp_path: Path) -> None:
    previous = os.umask(0o022)  # the common default, under which files come out 0644
    try:
        db = tmp_path / "data" / "cursorgate.db"
        store = await Store.open(f"sqlite+aiosqlite:///{db}")
        try:
            await store.seed_licenses([seed_license("sk-cg-file-mode-test")])
            files = [db, db.with_name("cursorgate.db-wal"), db.with_name("cursorgate.db-shm")]
            assert all(f.exists() for f in files), sorted(p.name for p in db.parent.iterdir())
            assert {f.name: oct(mode(f)) for f in files} == {f.name: oct(0o600) for f in files}
            assert mode(db.parent) == 0o700
        finally:
            await store.close()
    finally:
        os.umask(previous)


async def test_existing_database_files_are_tightened(tmp_path: Path) -> None:
    db = tmp_path / "cursorgate.db"
    first = await Store.open(f"sqlite+aiosqlite:///{db}")
    await first.close()
    for name in ("cursorgate.db", "cursorgate.db-wal", "cursorgate.db-shm"):
        path = tmp_path / name
        path.touch()
        path.chmod(0o644)
    store = await Store.open(f"sqlite+aiosqlite:///{db}")
    try:
        for name in ("cursorgate.db", "cursorgate.db-wal", "cursorgate.db-shm"):
            assert mode(tmp_path / name) == 0o600, name
    finally:
        await store.close()
