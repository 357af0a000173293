"""The store's operations. Admin calls await them; the hot path only goes through the Journal."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import BigInteger, ColumnElement, case, delete, func, literal_column, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from core.licensing.licenses import License
from core.licensing.secrets import hash_key
from core.pool.accounts import Account
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
    # The presented key's prefix, for requests refused before a license was found.
    key_prefix: str = ""
    ttft_ms: int = 0
    id: int = 0


_LOG_FIELDS = tuple(f for f in RequestEntry.__dataclass_fields__ if f != "id")

# Outcomes of requests the license checks refused (401, 403, 429 to the caller).
REJECTED = (
    "ERROR_CODE_UNAUTHENTICATED",
    "ERROR_CODE_MODEL_NOT_ALLOWED",
    "ERROR_CODE_QUOTA_EXCEEDED",
    "ERROR_CODE_RATE_LIMITED",
)
# Not errors: served, or the caller went away.
NOT_ERRORS = ("ok", "cancelled")


@dataclass(slots=True)
class RequestQuery:
    """Filters of the request log; empty values match anything."""

    license_id: str = ""
    # Matches the model that served or the one asked for.
    model: str = ""
    account_id: str = ""
    # "ok", "error", "rejected" or an outcome as logged.
    outcome: str = ""
    since: float | None = None
    until: float | None = None
    # Paging: only rows older than this id.
    before_id: int = 0

    def conditions(self) -> list[ColumnElement[bool]]:
        row = RequestLogRow
        found: list[ColumnElement[bool]] = []
        if self.license_id:
            found.append(row.license_id == self.license_id)
        if self.model:
            found.append(or_(row.model == self.model, row.requested_model == self.model))
        if self.account_id:
            found.append(row.account_id == self.account_id)
        if self.outcome == "error":
            found.append(row.outcome.not_in(NOT_ERRORS))
        elif self.outcome == "rejected":
            found.append(row.outcome.in_(REJECTED))
        elif self.outcome:
            found.append(row.outcome == self.outcome)
        if self.since is not None:
            found.append(row.time >= self.since)
        if self.until is not None:
            found.append(row.time < self.until)
        if self.before_id:
            found.append(row.id < self.before_id)
        return found


@dataclass(slots=True)
class UsageRow:
    """One group's totals in one time bucket."""

    group: str
    label: str
    bucket: int  # the bucket's start, Unix seconds
    requests: int
    prompt_tokens: int
    completion_tokens: int
    errors: int
    ttft_ms_total: int
    ttft_samples: int


class bucket_index(FunctionElement[int]):
    """floor(x / n) as an integer, n a trusted constant. PostgreSQL has floor(); SQLite builds
    may lack it, and there a cast truncates, which is the same for the positive times here."""

    type = BigInteger()
    inherit_cache = True


@compiles(bucket_index)
def _bucket_index(element: bucket_index, compiler: SQLCompiler, **kw: Any) -> str:
    return f"CAST(floor({compiler.process(element.clauses, **kw)}) AS BIGINT)"


@compiles(bucket_index, "sqlite")
def _bucket_index_sqlite(element: bucket_index, compiler: SQLCompiler, **kw: Any) -> str:
    return f"CAST({compiler.process(element.clauses, **kw)} AS INTEGER)"


USAGE_GROUPS = {
    "model": RequestLogRow.model,
    "license": RequestLogRow.license_id,
    "account": RequestLogRow.account_id,
}


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

    async def update_license(self, lic: License, reset_budget: bool = False) -> None:
        """The fields an operator may change (UpdateLicense); counters are left alone, but for
        the budget's when its period changed (`reset_budget`)."""
        counters = {"budget_used": 0, "budget_period_start": 0.0} if reset_budget else {}
        async with self._session.begin() as session:
            await session.execute(
                update(LicenseRow)
                .where(LicenseRow.id == lic.id)
                .values(
                    **counters,
                    name=lic.name,
                    allowed_models=sorted(lic.allowed_models) if lic.allowed_models is not None else None,
                    request_quota=lic.request_quota,
                    expires_at=lic.expires_at,
                    revoked_at=lic.revoked_at,
                    rpm_limit=lic.rpm_limit,
                    tpm_limit=lic.tpm_limit,
                    token_budget=lic.token_budget,
                    budget_period=lic.budget_period,
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

    async def add_budget_usage(self, usage: dict[tuple[str, float], int]) -> None:
        """Adds tokens to licenses' budget counts: {(license id, period start): tokens}. A newer
        period than the stored one starts the count afresh; an older one (a call that ran across
        the turn of the period) is dropped. Increments, so replicas can write at once."""
        async with self._session.begin() as session:
            for (license_id, start), n in sorted(usage.items(), key=lambda item: item[0][1]):
                same = await session.execute(
                    update(LicenseRow)
                    .where(LicenseRow.id == license_id, LicenseRow.budget_period_start == start)
                    .values(budget_used=LicenseRow.budget_used + n)
                )
                if not getattr(same, "rowcount", 0):
                    await session.execute(
                        update(LicenseRow)
                        .where(LicenseRow.id == license_id, LicenseRow.budget_period_start < start)
                        .values(budget_used=n, budget_period_start=start)
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

    # --- model aliases (the admin layer; see core/chat/aliases.py) ---

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

    async def recent_requests(self, limit: int, query: RequestQuery | None = None) -> list[RequestEntry]:
        """The newest rows that match `query`, newest first."""
        conditions = query.conditions() if query is not None else []
        async with self._session() as session:
            rows = await session.scalars(
                select(RequestLogRow).where(*conditions).order_by(RequestLogRow.id.desc()).limit(limit)
            )
            return [RequestEntry(id=row.id, **{f: getattr(row, f) for f in _LOG_FIELDS}) for row in rows]

    async def usage_rows(
        self, group_by: str, bucket_seconds: int, since: float, until: float
    ) -> list[UsageRow]:
        """Per group and time bucket: requests, tokens, errors and TTFT sums, in one GROUP BY
        (the same SQL on SQLite and PostgreSQL). `group_by` is a key of USAGE_GROUPS and
        `bucket_seconds` a whole number the caller chose from its own table."""
        row = RequestLogRow
        group = USAGE_GROUPS[group_by]
        # A literal, not a bound parameter: PostgreSQL must see the SELECT and GROUP BY
        # expressions as one and the same.
        index = bucket_index(row.time / literal_column(str(int(bucket_seconds))))
        query = (
            select(
                group,
                index,
                func.max(row.license_name),
                func.count(),
                func.coalesce(func.sum(row.prompt_tokens), 0),
                func.coalesce(func.sum(row.completion_tokens), 0),
                func.coalesce(func.sum(case((row.outcome.not_in(NOT_ERRORS), 1), else_=0)), 0),
                func.coalesce(func.sum(row.ttft_ms), 0),
                func.coalesce(func.sum(case((row.ttft_ms > 0, 1), else_=0)), 0),
            )
            .where(row.time >= since, row.time < until)
            .group_by(group, index)
            .order_by(index)
        )
        async with self._session() as session:
            result = await session.execute(query)
            return [
                UsageRow(
                    group=str(name or ""),
                    label=str(license_name or "") if group_by == "license" else str(name or ""),
                    bucket=int(idx) * bucket_seconds,
                    requests=int(n),
                    prompt_tokens=int(p),
                    completion_tokens=int(c),
                    errors=int(e),
                    ttft_ms_total=int(t),
                    ttft_samples=int(k),
                )
                for name, idx, license_name, n, p, c, e, t, k in result.all()
            ]
