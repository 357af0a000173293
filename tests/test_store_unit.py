"""The store and its journal in-process, on SQLite and (when configured) PostgreSQL."""

from __future__ import annotations

import time

import pytest

from core.chat.catalog import ModelInfo
from core.licensing.licenses import License, seed_license
from core.licensing.secrets import hash_key
from core.pool.accounts import Account
from core.store import Journal, RequestEntry, Store, normalize_url
from core.store.db import upgrade
from core.store.repo import DuplicateAccount
from tests.store_backends import BACKENDS, database_url

__all__ = ["database_url"]

pytestmark = pytest.mark.parametrize("database_url", BACKENDS, indirect=True)


async def test_migrations_are_idempotent_and_seeding_too(database_url: str) -> None:
    store = await Store.open(database_url)
    try:
        await upgrade(store.engine)  # a second `upgrade head` is a no-op
        assert await store.seed_licenses([seed_license("k1"), seed_license("k2")]) == 2
        assert await store.seed_licenses([seed_license("k1"), seed_license("k3")]) == 1
        assert {lic.key_hash for lic in await store.licenses()} == {hash_key(k) for k in ("k1", "k2", "k3")}
    finally:
        await store.close()


async def test_accounts_roundtrip_and_journal(database_url: str) -> None:
    store = await Store.open(database_url)
    journal = Journal(store, interval=60, keep_rows=5)
    try:
        account = Account(id="acc_1", token="a.b.c", label="one", client_version="2.3.0")
        await store.add_account(account)
        with pytest.raises(DuplicateAccount) as dup:
            await store.add_account(Account(id="acc_2", token="a.b.c"))
        assert str(dup.value) == "acc_1"

        account.models = {"m": ModelInfo(id="m", display_name="M", context_window=7)}
        account.cooldown_until = time.time() + 60
        account.details = {"usage": {"planUsage": {"limit": 2000}}}
        journal.account_changed(account)
        lic = License(
            id="lic_1", key_hash=hash_key("x"), name="x", allowed_models=frozenset({"m"}), request_quota=3
        )
        await store.add_license(lic)
        for _ in range(2):
            journal.count_use(lic)
        for n in range(12):
            journal.log_request(
                RequestEntry(time=time.time(), license_id="lic_1", model=f"m{n}", prompt_tokens=n)
            )
        await journal.flush()

        [loaded] = await store.accounts()
        assert loaded.models == account.models and loaded.details == account.details
        assert loaded.cooldown_until == pytest.approx(account.cooldown_until)
        assert (loaded.label, loaded.client_version, loaded.token) == ("one", "2.3.0", "a.b.c")
        [stored] = await store.licenses()
        assert (
            stored.requests_used == 2
            and stored.allowed_models == frozenset({"m"})
            and stored.request_quota == 3
        )
        recent = await store.recent_requests(100)
        assert [r.model for r in recent] == [f"m{n}" for n in range(11, 6, -1)]  # bounded, newest first

        await store.revoke_license("lic_1", 123.0)
        [revoked] = await store.licenses()
        assert revoked.revoked and revoked.revoked_at == 123.0
        await store.remove_account("acc_1")
        assert await store.accounts() == []
    finally:
        await journal.aclose()
        await store.close()


def test_database_urls_pick_async_drivers(database_url: str) -> None:
    assert normalize_url("sqlite:///x.db") == "sqlite+aiosqlite:///x.db"
    assert normalize_url("postgresql://u:p%40ss@h/db") == "postgresql+asyncpg://u:p%40ss@h/db"
    assert normalize_url(database_url) == database_url
