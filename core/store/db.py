"""Engine creation and schema migrations (Alembic, run programmatically at startup)."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import event
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

MIGRATIONS = Path(__file__).resolve().parent / "migrations"

log = logging.getLogger("cursorgate.store")

# The database holds Cursor tokens: only core's user may read it, its -wal and -shm alike
# (SQLite gives those the main file's permissions).
PRIVATE_FILE = 0o600
PRIVATE_DIR = 0o700


def normalize_url(url: str) -> str:
    """Accept the plain driver names people write and pick the async drivers."""
    parsed = make_url(url)
    driver = {
        "sqlite": "sqlite+aiosqlite",
        "postgresql": "postgresql+asyncpg",
        "postgres": "postgresql+asyncpg",
    }
    if parsed.drivername in driver:
        parsed = parsed.set(drivername=driver[parsed.drivername])
    return parsed.render_as_string(hide_password=False)


def _prepare_sqlite(url: str) -> None:
    database = make_url(url).database
    if database and database != ":memory:" and not database.startswith("file:"):
        make_private(Path(database).expanduser())


def make_private(path: Path) -> None:
    """Creates the database's directory 0700 and the file 0600 before SQLite opens it, and
    tightens an existing file and its -wal/-shm. An existing directory is the operator's: it is
    only warned about."""
    directory = path.parent
    if not directory.exists():
        directory.mkdir(parents=True, mode=PRIVATE_DIR)
        directory.chmod(PRIVATE_DIR)  # mkdir's mode passes through the umask
    elif directory.stat().st_mode & 0o077:
        log.warning("the database directory %s is open to other users; chmod 700 it", directory)
    if not path.exists():
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, PRIVATE_FILE))
    for file in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        if file.exists() and file.stat().st_mode & 0o077:
            file.chmod(PRIVATE_FILE)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets the admin API read while the journal writes; busy_timeout rides out short locks.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def create_engine(url: str) -> AsyncEngine:
    url = normalize_url(url)
    if url.startswith("sqlite"):
        _prepare_sqlite(url)
        engine = create_async_engine(url, hide_parameters=True)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(url, hide_parameters=True, pool_pre_ping=True, pool_size=5, max_overflow=5)


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    # ConfigParser interpolation would eat '%' in passwords.
    config.set_main_option("sqlalchemy.url", normalize_url(url).replace("%", "%%"))
    return config


async def upgrade(engine: AsyncEngine) -> None:
    """`alembic upgrade head` on the engine's database, inside the running event loop."""

    def run(connection: Connection) -> None:
        config = alembic_config(engine.url.render_as_string(hide_password=False))
        config.attributes["connection"] = connection
        command.upgrade(config, "head")

    async with engine.begin() as connection:
        await connection.run_sync(run)


async def connect(url: str) -> AsyncEngine:
    """An engine on an up-to-date schema."""
    engine = create_engine(url)
    await upgrade(engine)
    return engine
