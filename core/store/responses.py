"""Stored Responses API objects: put, get and delete per license, bounded in rows and in time."""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import delete, func, or_, select
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from core.store.tables import ResponseRow


@dataclass(slots=True)
class StoredResponse:
    id: str
    license_id: str
    model: str
    previous_response_id: str
    response_json: str
    items_json: str
    created_at: float = 0.0
    expires_at: float = 0.0


_FIELDS = tuple(StoredResponse.__dataclass_fields__)


class ResponseRepo:
    """The `responses` table. Every put also drops expired rows and the oldest beyond `max_rows`,
    so the table stays bounded without a background task."""

    def __init__(self, engine: AsyncEngine, max_rows: int, ttl: float) -> None:
        self._session = async_sessionmaker(engine, expire_on_commit=False)
        self.max_rows = max(1, max_rows)
        self.ttl = ttl

    async def put(self, response: StoredResponse) -> StoredResponse:
        now = time.time()
        response.created_at = now
        response.expires_at = now + self.ttl
        async with self._session.begin() as session:
            # Re-storing an id replaces it, but only the owner's: ids are random, so a clash with
            # another license's row means a guessed id, which must not overwrite anything.
            await session.execute(
                delete(ResponseRow).where(
                    ResponseRow.id == response.id, ResponseRow.license_id == response.license_id
                )
            )
            session.add(ResponseRow(**{f: getattr(response, f) for f in _FIELDS}))
            await session.flush()
            newest = await session.scalar(select(func.max(ResponseRow.seq)))
            await session.execute(
                delete(ResponseRow).where(
                    or_(ResponseRow.expires_at <= now, ResponseRow.seq <= (newest or 0) - self.max_rows)
                )
            )
        return response

    async def get(self, license_id: str, response_id: str) -> StoredResponse | None:
        async with self._session() as session:
            row = await session.scalar(
                select(ResponseRow).where(
                    ResponseRow.id == response_id,
                    ResponseRow.license_id == license_id,
                    ResponseRow.expires_at > time.time(),
                )
            )
            return None if row is None else StoredResponse(**{f: getattr(row, f) for f in _FIELDS})

    async def delete(self, license_id: str, response_id: str) -> bool:
        async with self._session.begin() as session:
            result = await session.execute(
                delete(ResponseRow).where(
                    ResponseRow.id == response_id,
                    ResponseRow.license_id == license_id,
                    ResponseRow.expires_at > time.time(),
                )
            )
            return bool(getattr(result, "rowcount", 0))
