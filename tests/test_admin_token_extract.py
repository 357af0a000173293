"""`cursorgate token extract`: reads a (synthetic) Cursor IDE state store."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from core.auth.ide_token import TokenNotFound, default_db_path, read_token
from tests.procs import ROOT, Stack
from tests.store_backends import ADMIN_KEY, admin_stack, database_url, distinct_token

__all__ = ["admin_stack", "database_url"]


def state_db(path: Path, value: str | None) -> Path:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE ItemTable (key TEXT UNIQUE ON CONFLICT REPLACE, value BLOB)")
        conn.execute("INSERT INTO ItemTable VALUES ('cursorAuth/cachedEmail', 'me@example.com')")
        if value is not None:
            conn.execute("INSERT INTO ItemTable VALUES ('cursorAuth/accessToken', ?)", (value,))
    return path


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from core.cli import main; main()", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        timeout=60,
    )


def test_extract_prints_the_token(tmp_path: Path) -> None:
    token = distinct_token("auth0|user_ide")
    done = cli("token", "extract", "--db", str(state_db(tmp_path / "state.vscdb", token)))
    assert done.returncode == 0 and done.stdout == token + "\n"
    quoted = state_db(tmp_path / "quoted.vscdb", f'"{token}"')
    assert read_token(quoted) == token


def test_extract_explains_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(TokenNotFound, match="sign in"):
        read_token(state_db(tmp_path / "empty.vscdb", None))
    done = cli("token", "extract", "--db", str(tmp_path / "absent.vscdb"))
    assert done.returncode == 1 and "does not exist" in done.stderr and done.stdout == ""


def test_default_paths_per_os(monkeypatch: pytest.MonkeyPatch) -> None:
    home = Path("/home/u")
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.setenv("APPDATA", "C:/Users/u/AppData/Roaming")
    assert default_db_path("linux", home) == home / ".config/Cursor/User/globalStorage/state.vscdb"
    assert (
        default_db_path("darwin", home)
        == home / "Library/Application Support/Cursor/User/globalStorage/state.vscdb"
    )
    assert default_db_path("win32", home) == Path(
        "C:/Users/u/AppData/Roaming/Cursor/User/globalStorage/state.vscdb"
    )


def test_extract_and_add(admin_stack: Stack, tmp_path: Path) -> None:
    token = distinct_token("auth0|user_ide_add")
    db = state_db(tmp_path / "state.vscdb", token)
    env = {
        "CURSORGATE_ADMIN_KEY": ADMIN_KEY,
        "CURSORGATE_GRPC_PORT": str(admin_stack.core.port),
        "CURSORGATE_ENV_FILE": str(tmp_path / "none.env"),
    }
    done = cli("token", "extract", "--db", str(db), "--add", "--label", "my ide", env=env)
    assert done.returncode == 0, done.stderr
    assert "added account acc_" in done.stdout and token not in done.stdout
    labels = [a["label"] for a in admin_stack.admin("GET", "/accounts").json()["accounts"]]
    assert "my ide" in labels
    again = cli("token", "extract", "--db", str(db), "--add", env=env)
    assert again.returncode == 1 and "ALREADY_EXISTS" in again.stderr
