"""The store's operations. Admin calls await them; the hot path only goes through the Journal."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from core.accounts import Account
from core.licenses import License
from core.secrets import hash_key
from core.store.convert import (
    SECRET_COLUMNS,
    account_from_row,
    account_state,
    license_from_row,
    license_to_row,
)
from core.store.db import connect
from core.store.secretbox import SecretBox
from core.store.tables import AccountRow, AliasRow, LicenseRow, RequestLogRow


class DuplicateAccount(Exception):
    """The token is already in the pool (its id is the argument)."""


@dataclass(slots=True)
class RequestEntry:
    time: float
    license_id: str = ""
    license_name: str = ""
    model: str = ""
    account_id: str = ""
    latency_ms: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    outcome: str = "ok"
    stream: bool = False
    # What the caller asked for when an alias, "-max" suffix or variant changed it ("" if not).
    requested_model: str = ""
    id: int = 0


_LOG_FIELDS = tuple(f for f in RequestEntry.__dataclass_fields__ if f != "id")


class Store:
    def __init__(self, engine: AsyncEngine, box: SecretBox | None = None) -> None:
        self.engine = engine
        self.box = box or SecretBox(None)
        self._session = async_sessionmaker(engine, expire_on_commit=False)

    @classmethod
    async def open(cls, url: str, secret_key: str | None = None) -> Store:
        """Connects, migrates, and seals credentials still in clear when a key is set. Credentials
        sealed under a key that is not given are a clear error at start, never a silent wipe."""
        store = cls(await connect(url), SecretBox(secret_key))
        try:
            await store.reseal(store.box)
        except BaseException:
            await store.close()
            raise
        return store

    async def reseal(self, new: SecretBox) -> int:
        """Every credential opened with the current key and sealed again with `new` (in clear
        when `new` has no key). Also the check that the current key opens them all."""
        changed = 0
        async with self._session.begin() as session:
            rows = (await session.scalars(select(AccountRow))).all()
            for row in rows:
                for column in SECRET_COLUMNS:
                    stored = getattr(row, column) or ""
                    value = new.seal(self.box.open(stored, column), column)
                    if value != stored:
                        setattr(row, column, value)
                        changed += 1
        self.box = new
        return changed

    def _sealed(self, values: dict[str, Any]) -> dict[str, Any]:
        return {k: self.box.seal(v, k) if k in SECRET_COLUMNS else v for k, v in values.items()}

    async def close(self) -> None:
        await self.engine.dispose()

    # --- licenses ---

    async def licenses(self) -> list[License]:
        async with self._session() as session:
            rows = await session.scalars(select(LicenseRow).order_by(LicenseRow.created_at))
            return [license_from_row(row) for row in rows]

    async def add_license(self, lic: License) -> None:
        async with self._session.begin() as session:
            session.add(license_to_row(lic))

    async def seed_licenses(self, seeds: list[License]) -> int:
        """Inserts the seeds whose hash is not stored yet (a revoked seed stays revoked)."""
        async with self._session.begin() as session:
            known = set(await session.scalars(select(LicenseRow.key_hash)))
            fresh = [lic for lic in seeds if lic.key_hash not in known]
            session.add_all(license_to_row(lic) for lic in fresh)
        return len(fresh)

    async def revoke_license(self, license_id: str, at: float) -> None:
        async with self._session.begin() as session:
            await session.execute(
                update(LicenseRow)
                .where(LicenseRow.id == license_id, LicenseRow.revoked_at.is_(None))
                .values(revoked_at=at)
            )

    async def update_license(self, lic: License) -> None:
        """The fields an operator may change (UpdateLicense); counters are left alone."""
        async with self._session.begin() as session:
            await session.execute(
                update(LicenseRow)
                .where(LicenseRow.id == lic.id)
                .values(
                    name=lic.name,
                    allowed_models=sorted(lic.allowed_models) if lic.allowed_models is not None else None,
                    request_quota=lic.request_quota,
                    expires_at=lic.expires_at,
                    revoked_at=lic.revoked_at,
                )
            )

    async def add_license_usage(self, counts: dict[str, int]) -> None:
        # Increments rather than absolute values: several core replicas may count at once.
        async with self._session.begin() as session:
            for license_id, n in counts.items():
                await session.execute(
                    update(LicenseRow)
                    .where(LicenseRow.id == license_id)
                    .values(requests_used=LicenseRow.requests_used + n)
                )

    async def charge_license(self, license_id: str, pending: int) -> int | None:
        """Counts one use if it fits the license's quota, in one conditional UPDATE (atomic, so
        replicas cannot both take the last use). `pending`: uses not yet flushed by this process.
        The new stored count, or None when the quota is used up (or the license is gone)."""
        async with self._session.begin() as session:
            used: int | None = await session.scalar(
                update(LicenseRow)
                .where(
                    LicenseRow.id == license_id,
                    or_(
                        LicenseRow.request_quota.is_(None),
                        LicenseRow.requests_used + pending < LicenseRow.request_quota,
                    ),
                )
                .values(requests_used=LicenseRow.requests_used + 1)
                .returning(LicenseRow.requests_used)
            )
            return used

    # --- accounts ---

    async def accounts(self) -> list[Account]:
        async with self._session() as session:
            rows = await session.scalars(select(AccountRow).order_by(AccountRow.created_at))
            accounts = [account_from_row(row) for row in rows]
        for account in accounts:
            account.token = self.box.open(account.token, "token")
            account.refresh_token = self.box.open(account.refresh_token, "refresh_token")
            account.api_key = self.box.open(account.api_key, "api_key")
            account.proxy = self.box.open(account.proxy, "proxy")
        return accounts

    async def account_id_for_token(self, token: str) -> str | None:
        async with self._session() as session:
            found: str | None = await session.scalar(
                select(AccountRow.id).where(AccountRow.token_hash == hash_key(token))
            )
            return found

    async def add_account(self, account: Account) -> None:
        row = AccountRow(id=account.id, created_at=account.created_at, **self._sealed(account_state(account)))
        try:
            async with self._session.begin() as session:
                session.add(row)
        except IntegrityError:
            existing = await self.account_id_for_token(account.token)
            raise DuplicateAccount(existing or "") from None

    async def save_accounts(self, states: dict[str, dict[str, Any]]) -> None:
        async with self._session.begin() as session:
            for account_id, values in states.items():
                await session.execute(
                    update(AccountRow).where(AccountRow.id == account_id).values(**self._sealed(values))
                )

    async def remove_account(self, account_id: str) -> None:
        async with self._session.begin() as session:
            await session.execute(delete(AccountRow).where(AccountRow.id == account_id))

    # --- model aliases (the admin layer; see core/aliases.py) ---

    async def aliases(self) -> dict[str, tuple[str, ...]]:
        async with self._session() as session:
            rows = await session.scalars(select(AliasRow).order_by(AliasRow.name))
            return {row.name: tuple(row.targets) for row in rows}

    async def set_alias(self, name: str, targets: tuple[str, ...], at: float) -> None:
        async with self._session.begin() as session:
            await session.merge(AliasRow(name=name, targets=list(targets), updated_at=at))

    async def delete_alias(self, name: str) -> None:
        async with self._session.begin() as session:
            await session.execute(delete(AliasRow).where(AliasRow.name == name))

    # --- request log ---

    async def log_requests(self, entries: list[RequestEntry], keep: int) -> None:
        """Appends, then deletes all but the newest `keep` rows."""
        async with self._session.begin() as session:
            session.add_all(RequestLogRow(**{f: getattr(e, f) for f in _LOG_FIELDS}) for e in entries)
            await session.flush()
            newest = await session.scalar(select(func.max(RequestLogRow.id)))
            if newest is not None and newest > keep:
                await session.execute(delete(RequestLogRow).where(RequestLogRow.id <= newest - keep))

    async def recent_requests(self, limit: int) -> list[RequestEntry]:
        async with self._session() as session:
            rows = await session.scalars(select(RequestLogRow).order_by(RequestLogRow.id.desc()).limit(limit))
            return [RequestEntry(id=row.id, **{f: getattr(row, f) for f in _LOG_FIELDS}) for row in rows]
