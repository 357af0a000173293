"""The request log's store side in-process, on SQLite and (when configured) PostgreSQL: migration
0003 keeps the rows already logged, and usage buckets fall on exact bucket boundaries."""

from __future__ import annotations

import pytest
from alembic import command
from sqlalchemy import Connection, text

from core.store import RequestEntry, Store
from core.store.db import alembic_config, create_engine
from core.store.repo import RequestQuery
from tests.store_backends import BACKENDS, database_url

__all__ = ["database_url"]

pytestmark = pytest.mark.parametrize("database_url", BACKENDS, indirect=True)

# A whole hour (490000 * 3600), written out rather than computed by the code under test.
HOUR = 1_764_000_000


async def test_migration_keeps_logged_rows(database_url: str) -> None:
    engine = create_engine(database_url)

    def to_0002(connection: Connection) -> None:
        config = alembic_config(engine.url.render_as_string(hide_password=False))
        config.attributes["connection"] = connection
        command.upgrade(config, "0002_responses")

    async with engine.begin() as connection:
        await connection.run_sync(to_0002)
        await connection.execute(
            text(
                "INSERT INTO request_log (time, license_id, license_name, model, account_id, latency_ms, "
                "prompt_tokens, completion_tokens, outcome, stream, requested_model) VALUES "
                "(1764000000.5, 'lic_old', 'old', 'composer-1', 'acc_old', 120, 7, 9, 'ok', true, '')"
            )
        )
    await engine.dispose()

    store = await Store.open(database_url)
    try:
        [row] = await store.recent_requests(10)
        assert (row.license_id, row.model, row.prompt_tokens, row.completion_tokens) == (
            "lic_old",
            "composer-1",
            7,
            9,
        )
        assert (row.key_prefix, row.ttft_ms) == ("", 0)
        [usage] = await store.usage_rows("license", 3600, HOUR, HOUR + 3600)
        assert (usage.group, usage.label, usage.bucket, usage.requests, usage.ttft_samples) == (
            "lic_old",
            "old",
            HOUR,
            1,
            0,
        )
    finally:
        await store.close()


async def test_usage_buckets_and_filters(database_url: str) -> None:
    store = await Store.open(database_url)
    try:
        entries = [
            RequestEntry(
                time=HOUR + 10, model="a", license_id="l1", ttft_ms=100, prompt_tokens=3, completion_tokens=4
            ),
            RequestEntry(time=HOUR + 3599.9, model="a", license_id="l1", outcome="ERROR_CODE_UPSTREAM_ERROR"),
            RequestEntry(time=HOUR + 3600, model="a", license_id="l2", ttft_ms=300, completion_tokens=5),
            RequestEntry(
                time=HOUR + 3600.5, model="b", outcome="ERROR_CODE_UNAUTHENTICATED", key_prefix="sk-x"
            ),
            RequestEntry(time=HOUR + 3601, model="b", license_id="l2", outcome="cancelled"),
        ]
        await store.log_requests(entries, keep=100)

        hours = {(r.group, r.bucket): r for r in await store.usage_rows("model", 3600, HOUR, HOUR + 7200)}
        assert set(hours) == {("a", HOUR), ("a", HOUR + 3600), ("b", HOUR + 3600)}
        first = hours[("a", HOUR)]
        assert (first.requests, first.errors, first.prompt_tokens, first.completion_tokens) == (2, 1, 3, 4)
        assert (first.ttft_ms_total, first.ttft_samples) == (100, 1)
        second = hours[("a", HOUR + 3600)]
        assert (second.requests, second.errors, second.ttft_ms_total, second.completion_tokens) == (
            1,
            0,
            300,
            5,
        )
        # A cancelled call is not an error; a refused one is.
        assert (hours[("b", HOUR + 3600)].requests, hours[("b", HOUR + 3600)].errors) == (2, 1)

        minutes = sorted((r.group, r.bucket) for r in await store.usage_rows("model", 60, HOUR, HOUR + 7200))
        assert minutes == [("a", HOUR), ("a", HOUR + 3540), ("a", HOUR + 3600), ("b", HOUR + 3600)]
        # `until` is exclusive, `since` inclusive.
        assert [r.requests for r in await store.usage_rows("model", 3600, HOUR + 10, HOUR + 3600)] == [2]

        async def run(query: RequestQuery) -> list[float]:
            """Times (seconds after HOUR) of the matching rows, newest first."""
            return [round(e.time - HOUR, 1) for e in await store.recent_requests(100, query)]

        assert await run(RequestQuery(outcome="rejected")) == [3600.5]
        assert await run(RequestQuery(outcome="error")) == [3600.5, 3599.9]
        assert await run(RequestQuery(license_id="l2")) == [3601, 3600]
        assert await run(RequestQuery(model="b", outcome="cancelled")) == [3601]
        assert await run(RequestQuery(since=HOUR + 3599.9, until=HOUR + 3601)) == [3600.5, 3600, 3599.9]
        newest_two = await store.recent_requests(2)
        assert await run(RequestQuery(before_id=newest_two[-1].id)) == [3600, 3599.9, 10]
    finally:
        await store.close()
