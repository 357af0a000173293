"""License limits in the store, on SQLite and (when configured) PostgreSQL: the columns of
migration 0003_limits round-trip, and budget usage is added per period (a newer period starts
the count afresh, an older one is dropped), as the journal writes it."""

from __future__ import annotations

import pytest

from core.licensing.licenses import License, LicenseRegistry
from core.licensing.secrets import hash_key
from core.pool.accounts import AccountPool
from core.store import Journal, Store
from core.store.sync import sync_once
from tests.store_backends import BACKENDS, database_url

__all__ = ["database_url"]

pytestmark = pytest.mark.parametrize("database_url", BACKENDS, indirect=True)

DAY_1 = 1_795_651_200.0  # 2026-11-26T00:00:00Z
DAY_2 = DAY_1 + 86_400


async def test_limits_round_trip_and_budget_usage_per_period(database_url: str) -> None:
    store = await Store.open(database_url)
    journal = Journal(store, interval=60, keep_rows=5)
    try:
        lic = License(
            id="lic_1",
            key_hash=hash_key("k"),
            rpm_limit=5,
            tpm_limit=900,
            token_budget=10**12,
            budget_period="day",
        )
        await store.add_license(lic)
        journal.count_budget(lic, DAY_1, 40)
        journal.count_budget(lic, DAY_1, 2)
        await journal.flush()
        [stored] = await store.licenses()
        assert (stored.rpm_limit, stored.tpm_limit, stored.token_budget) == (5, 900, 10**12)
        assert (stored.budget_period, stored.budget_used, stored.budget_period_start) == ("day", 42, DAY_1)

        await store.add_budget_usage({("lic_1", DAY_2): 7})  # a new day: from 0
        await store.add_budget_usage({("lic_1", DAY_1): 1000})  # yesterday's late call: dropped
        [stored] = await store.licenses()
        assert (stored.budget_used, stored.budget_period_start) == (7, DAY_2)

        # An operator's change of period resets the count; lifting limits stores NULLs.
        lic.budget_period, lic.rpm_limit, lic.tpm_limit = "week", None, None
        await store.update_license(lic, reset_budget=True)
        [stored] = await store.licenses()
        assert (stored.budget_period, stored.budget_used, stored.budget_period_start) == ("week", 0, 0.0)
        assert (stored.rpm_limit, stored.tpm_limit) == (None, None)
    finally:
        await journal.aclose()
        await store.close()


async def test_store_sync_brings_other_replicas_limits_and_budget_counts(database_url: str) -> None:
    store = await Store.open(database_url)
    journal = Journal(store, interval=60, keep_rows=5)
    try:
        stored = License(id="lic_1", key_hash=hash_key("k"), token_budget=100, budget_period="day")
        await store.add_license(stored)
        # This replica's view: 10 tokens today, 3 of them not yet written.
        mine = License(
            id="lic_1",
            key_hash=hash_key("k"),
            token_budget=100,
            budget_period="day",
            budget_used=10,
            budget_period_start=DAY_1,
        )
        registry = LicenseRegistry([mine])
        journal.count_budget(mine, DAY_1, 3)
        # Another replica wrote 42 for today and set an RPM limit.
        await store.add_budget_usage({("lic_1", DAY_1): 42})
        stored.rpm_limit = 9
        await store.update_license(stored)

        await sync_once(store, registry, AccountPool(), journal)
        assert (mine.rpm_limit, mine.budget_used, mine.budget_period_start) == (9, 45, DAY_1)

        # The other replica is already counting tomorrow: its count wins.
        await store.add_budget_usage({("lic_1", DAY_2): 5})
        await sync_once(store, registry, AccountPool(), journal)
        assert (mine.budget_used, mine.budget_period_start) == (5, DAY_2)
    finally:
        await store.close()
