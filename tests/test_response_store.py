"""Core's store of Responses API objects in-process, on SQLite and (when configured) PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import IntegrityError

from core.store import Store
from core.store.responses import ResponseRepo, StoredResponse
from tests.store_backends import BACKENDS, database_url

__all__ = ["database_url"]

pytestmark = pytest.mark.parametrize("database_url", BACKENDS, indirect=True)


def stored(response_id: str, license_id: str = "lic_a", text: str = "{}") -> StoredResponse:
    return StoredResponse(
        id=response_id,
        license_id=license_id,
        model="gpt-5.2",
        previous_response_id="",
        response_json=text,
        items_json="[]",
    )


async def test_put_get_delete_per_license(database_url: str) -> None:
    store = await Store.open(database_url)
    repo = ResponseRepo(store.engine, max_rows=10, ttl=60)
    try:
        put = await repo.put(stored("resp_1", text='{"v": 1}'))
        assert put.expires_at - put.created_at == pytest.approx(60)
        found = await repo.get("lic_a", "resp_1")
        assert found is not None and found.response_json == '{"v": 1}' and found.model == "gpt-5.2"
        assert await repo.get("lic_b", "resp_1") is None  # another license sees nothing
        assert not await repo.delete("lic_b", "resp_1")  # nor deletes it
        await repo.put(stored("resp_1", text='{"v": 2}'))  # the owner replaces it
        again = await repo.get("lic_a", "resp_1")
        assert again is not None and again.response_json == '{"v": 2}'
        with pytest.raises(IntegrityError):  # another license cannot take the id over
            await repo.put(stored("resp_1", license_id="lic_b"))
        assert await repo.delete("lic_a", "resp_1")
        assert await repo.get("lic_a", "resp_1") is None
        assert not await repo.delete("lic_a", "resp_1")
    finally:
        await store.close()


async def test_bounded_in_rows_and_time(database_url: str) -> None:
    store = await Store.open(database_url)
    try:
        repo = ResponseRepo(store.engine, max_rows=3, ttl=60)
        for n in range(5):
            await repo.put(stored(f"resp_{n}"))
        kept = [n for n in range(5) if await repo.get("lic_a", f"resp_{n}") is not None]
        assert kept == [2, 3, 4]
        expired = ResponseRepo(store.engine, max_rows=3, ttl=0)
        await expired.put(stored("resp_gone"))
        assert await expired.get("lic_a", "resp_gone") is None
        # Its put trimmed the table to 3 rows, counting its own (expired) one.
        assert await repo.get("lic_a", "resp_2") is None
    finally:
        await store.close()
