"""Which dialect an account speaks: pinned (per account or gateway-wide), or found by probing.

`auto` probes the dialects in order of preference with each one's cheapest telling call,
remembers the first that works on the account (persisted with it), and probes again when Cursor
calls that dialect outdated, deprecated or "Update Required".
"""

from __future__ import annotations

import asyncio
import logging
import time

from core.config import CoreSettings
from core.pool.accounts import Account, AccountPool
from core.upstream.base import AUTO, PREFERENCE, Dialect, DialectName, Probe
from core.upstream.errors import Failure, UpstreamError

log = logging.getLogger("cursorgate.upstream")


_NOT_ABOUT_THE_DIALECT = frozenset(
    {
        Failure.AUTH,
        Failure.ACCOUNT_BLOCKED,
        Failure.RATE_LIMITED,
        Failure.USAGE_LIMIT,
        Failure.UNAVAILABLE,
        Failure.TIMEOUT,
    }
)


class DialectChooser:
    def __init__(
        self, settings: CoreSettings, dialects: dict[DialectName, Dialect], pool: AccountPool | None
    ) -> None:
        self.settings = settings
        self.dialects = dialects
        self.pool = pool
        self._locks: dict[str, asyncio.Lock] = {}

    def pinned(self, account: Account) -> DialectName | None:
        """The dialect an operator chose for this account, else for the gateway; None for auto."""
        for choice in (account.dialect, self.settings.upstream_dialect):
            if choice and choice != AUTO:
                name = DialectName(choice)
                if name in self.dialects:
                    return name
        return None

    async def dialect_for(self, account: Account) -> Dialect:
        pinned = self.pinned(account)
        if pinned is not None:
            return self.dialects[pinned]
        active = account.dialect_state.get("active")
        if isinstance(active, str) and active in self.dialects:
            return self.dialects[DialectName(active)]
        lock = self._locks.setdefault(account.id, asyncio.Lock())
        async with lock:  # one probe per account, however many requests wait for it
            active = account.dialect_state.get("active")
            if not (isinstance(active, str) and active in self.dialects):
                await self._probe(account, stop_at_first=True)
                active = account.dialect_state.get("active")
        if isinstance(active, str) and active in self.dialects:
            return self.dialects[DialectName(active)]
        raise UpstreamError(
            Failure.OUTDATED_CLIENT,
            "Cursor accepted none of the gateway's chat protocols for this account; "
            "see the account's probe results in the admin API.",
        )

    def demote(self, account: Account, dialect: Dialect, reason: str) -> bool:
        """Cursor called `dialect` outdated for this account. True when auto may try another."""
        if self.pinned(account) is not None:
            return False
        probes = dict(_probes(account))
        probes[dialect.name.value] = {"ok": False, "detail": reason[:300], "at": time.time()}
        account.dialect_state = {"active": None, "probes": probes}
        log.warning(
            "account %s: Cursor refused the %s dialect; probing again", account.id, dialect.name.value
        )
        self._changed(account)
        return True

    async def reprobe(self, account: Account) -> dict[str, Probe]:
        return await self._probe(account, stop_at_first=False)

    async def _probe(self, account: Account, *, stop_at_first: bool) -> dict[str, Probe]:
        """Probes in order of preference. Failures that are about the token, the account or the
        connection propagate (the router handles them); only an answer that refuses the dialect
        itself counts against it."""
        results: dict[str, Probe] = {}
        probes = dict(_probes(account))
        refused = {name for name, p in probes.items() if isinstance(p, dict) and p.get("ok") is False}
        active: str | None = None
        order = [d for d in PREFERENCE if d in self.dialects]
        # A dialect already refused is tried last, so a demoted one is not picked again at once.
        order.sort(key=lambda d: d.value in refused and stop_at_first)
        for name in order:
            try:
                result = await self.dialects[name].probe(account)
            except UpstreamError as err:
                if err.failure in _NOT_ABOUT_THE_DIALECT:
                    raise
                result = Probe(False, f"{err.failure.value}: {err.message}")
            results[name.value] = result
            probes[name.value] = {"ok": result.ok, "detail": result.detail[:300], "at": time.time()}
            if result.ok and active is None:
                active = name.value
                if stop_at_first:
                    break
        account.dialect_state = {"active": active, "probes": probes}
        log.info("account %s: dialect %s (probed %s)", account.id, active or "none", ", ".join(results))
        self._changed(account)
        return results

    def _changed(self, account: Account) -> None:
        if self.pool is not None:
            self.pool.changed(account)


def _probes(account: Account) -> dict[str, object]:
    probes = account.dialect_state.get("probes")
    return probes if isinstance(probes, dict) else {}
