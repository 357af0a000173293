"""Writes off the hot path: request log rows, license usage counts and account state changes
are collected in memory and written in batches by one background task.

What a kill -9 of core can lose: request log rows, usage counts of licenses without a quota and
tokens counted against budgets from the last `interval` (CURSORGATE_STORE_FLUSH_INTERVAL, 0.5 s).
Account state changes wake the writer at once (a cool-down or a disabled token must not be
forgotten), so only the few milliseconds of the write itself. Uses of licenses with a quota
never pass through here: they are counted in the store before the request is served
(core/store/quota.py)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from typing import Any

from core.licensing.licenses import License
from core.pool.accounts import Account
from core.store.convert import account_state
from core.store.repo import RequestEntry, Store

log = logging.getLogger("cursorgate.store")

# Past this many unwritten log rows (the database is down or slow), the oldest are dropped:
# the request log is a convenience, memory is not.
MAX_PENDING_ROWS = 10_000


class Journal:
    def __init__(self, store: Store, interval: float, keep_rows: int) -> None:
        self.store = store
        self.interval = interval
        self.keep_rows = keep_rows
        self._rows: list[RequestEntry] = []
        self._usage: Counter[str] = Counter()
        # Tokens against license budgets: (license id, period start) -> tokens.
        self._budget: Counter[tuple[str, float]] = Counter()
        self._dirty: dict[str, Account] = {}
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        # Set when something must not wait for the next interval.
        self._soon = asyncio.Event()

    # Called on the hot path: no awaiting, no I/O.

    def log_request(self, entry: RequestEntry) -> None:
        self._rows.append(entry)
        del self._rows[:-MAX_PENDING_ROWS]

    def count_use(self, lic: License) -> None:
        self._usage[lic.id] += 1

    def count_budget(self, lic: License, start: float, tokens: int) -> None:
        self._budget[(lic.id, start)] += tokens

    def pending_budget(self, license_id: str, start: float) -> int:
        return self._budget.get((license_id, start), 0)

    def account_changed(self, account: Account) -> None:
        self._dirty[account.id] = account
        self._soon.set()

    def pending_usage(self, license_id: str) -> int:
        return self._usage.get(license_id, 0)

    # Background side.

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="store-journal")

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._soon.wait(), self.interval)
            self._soon.clear()
            try:
                await self.flush()
            except Exception as err:  # the next round retries; never kill the loop
                log.warning("store write failed (%s); will retry", type(err).__name__)

    async def flush(self) -> None:
        async with self._lock:
            await self._flush_usage()
            await self._flush_budget()
            await self._flush_accounts()
            await self._flush_rows()

    # Each part is put back on failure (newer changes win), so a transient error loses nothing
    # and a retry writes nothing twice.

    async def _flush_usage(self) -> None:
        usage, self._usage = self._usage, Counter()
        if not usage:
            return
        try:
            await self.store.add_license_usage(dict(usage))
        except Exception:
            self._usage.update(usage)
            raise

    async def _flush_budget(self) -> None:
        budget, self._budget = self._budget, Counter()
        if not budget:
            return
        try:
            await self.store.add_budget_usage(dict(budget))
        except Exception:
            self._budget.update(budget)
            raise

    async def _flush_accounts(self) -> None:
        dirty, self._dirty = self._dirty, {}
        if not dirty:
            return
        # Snapshot now: later changes mark the account dirty again.
        states: dict[str, dict[str, Any]] = {aid: account_state(a) for aid, a in dirty.items()}
        try:
            await self.store.save_accounts(states)
        except Exception:
            for aid, account in dirty.items():
                self._dirty.setdefault(aid, account)
            raise

    async def _flush_rows(self) -> None:
        rows, self._rows = self._rows, []
        if not rows:
            return
        try:
            await self.store.log_requests(rows, self.keep_rows)
        except Exception:
            self._rows[:0] = rows
            raise

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        try:
            await self.flush()
        except Exception as err:
            log.warning("final store write failed (%s)", type(err).__name__)
