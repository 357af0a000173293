"""Databases for the store/pool/admin suites: a SQLite file always, PostgreSQL when
CURSORGATE_TEST_POSTGRES_URL names a server where the user may create databases."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from simulator.config import make_jwt
from tests.procs import Stack, start_stack

POSTGRES_ENV = "CURSORGATE_TEST_POSTGRES_URL"
BACKENDS = ["sqlite", "postgres"]


async def _admin_sql(url: str, sql: str) -> None:
    import asyncpg  # type: ignore[import-untyped]

    parsed = make_url(url)
    conn = await asyncpg.connect(
        host=parsed.host,
        port=parsed.port or 5432,
        user=parsed.username,
        password=parsed.password,
        database=parsed.database or "postgres",
    )
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def _run(coro: object) -> None:
    # Synchronous fixtures: a private loop, never the test session's.
    asyncio.run(coro)  # type: ignore[arg-type]


@pytest.fixture
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Parametrise with `@pytest.mark.parametrize("database_url", BACKENDS, indirect=True)`."""
    backend = getattr(request, "param", "sqlite")
    if backend == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'data' / 'cursorgate.db'}"
        return
    base = os.environ.get(POSTGRES_ENV)
    if not base:
        pytest.skip(f"{POSTGRES_ENV} is not set")
    with scratch_database(base, "cg_test") as url:
        yield url


@contextmanager
def scratch_database(base: str, prefix: str) -> Iterator[str]:
    """A database of its own on the PostgreSQL server `base` names, dropped afterwards; its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    _run(_admin_sql(base, f'CREATE DATABASE "{name}"'))
    try:
        yield (
            make_url(base)
            .set(drivername="postgresql+asyncpg", database=name)
            .render_as_string(hide_password=False)
        )
    finally:
        _run(_admin_sql(base, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


ADMIN_KEY = "adm-test-key-0123456789"


@pytest.fixture
def admin_stack(tmp_path: Path, database_url: str) -> Iterator[Stack]:
    """A gateway with the admin API on, its store on `database_url`."""
    env = {"CURSORGATE_ADMIN_KEY": ADMIN_KEY, "CURSORGATE_DATABASE_URL": database_url}
    gateway = start_stack(tmp_path, env)
    yield gateway
    gateway.stop()


def distinct_token(subject: str) -> str:
    """A simulator token whose last 16 characters (the simulator's key for it) are its own:
    make_jwt's tokens share their signature part, so this one gets a signature of its own."""
    signature = base64.urlsafe_b64encode(hashlib.sha256(subject.encode()).digest()).rstrip(b"=").decode()
    return f"{make_jwt(subject).rsplit('.', 1)[0]}.{signature}"
