"""Fetching each account's details from Cursor: on add, on demand, and on a schedule.

Models come from AiService/AvailableModels (what the pool routes on). Usage and plan come from
DashboardService/GetCurrentPeriodUsage (Connect+JSON) and GET /auth/full_stripe_profile; those
are informative and best-effort: a failure is recorded as last_error, never disables.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Protocol

import httpx

from core.chat.catalog import ModelInfo
from core.config import CoreSettings
from core.pool.accounts import Account, AccountPool
from core.pool.proxies import ClientsByProxy, reachable
from core.upstream.errors import Failure, UpstreamError
from core.upstream.headers import ClientIdentity, cursor_headers

log = logging.getLogger("cursorgate.refresh")

USAGE_PATH = "/aiserver.v1.DashboardService/GetCurrentPeriodUsage"
PROFILE_PATH = "/auth/full_stripe_profile"
# Details are for display: a huge answer is not kept.
MAX_DETAIL_BYTES = 64 * 1024
CONCURRENCY = 4


class ModelSource(Protocol):
    async def available_models(self, account: Account) -> dict[str, ModelInfo]: ...

    async def probe(self, account: Account) -> object: ...


class Refresher:
    def __init__(self, settings: CoreSettings, pool: AccountPool, models: ModelSource) -> None:
        self.settings = settings
        self.pool = pool
        self.models = models
        # Usage and plan go through the account's own proxy when it has one.
        self._http = ClientsByProxy(
            settings.upstream_proxy, base_url=settings.upstream_url.rstrip("/"), timeout=20.0
        )
        self._task: asyncio.Task[None] | None = None
        self._limit = asyncio.Semaphore(CONCURRENCY)

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._http.aclose()

    def _headers(self, account: Account) -> dict[str, str]:
        identity = ClientIdentity(
            client_version=account.client_version or self.settings.client_version,
            timezone=self.settings.timezone,
            ghost_mode=self.settings.ghost_mode,
        )
        return cursor_headers(account.token, identity)

    async def refresh(self, account: Account) -> None:
        """Fetches everything; the account's fields are updated in place and reported changed."""
        async with self._limit:
            errors: list[str] = []
            try:
                account.models = await self.models.available_models(account)
            except UpstreamError as err:
                if err.failure is Failure.AUTH:
                    account.enabled = False
                    account.disabled_reason = f"Cursor rejected the token: {err.message}"
                elif (
                    account.proxy
                    and err.failure is Failure.UNAVAILABLE
                    and not await reachable(account.proxy)
                ):
                    # The proxy's fault, as on the chat path: its accounts wait for it.
                    self.pool.proxies.mark_down(account.proxy, "the proxy refused a connection (refresh)")
                errors.append(f"models: {err.failure.value}: {err.message}")
            for key, fetch in (("usage", self._usage), ("membership", self._membership)):
                try:
                    account.details[key] = await fetch(account)
                except _DetailError as err:
                    errors.append(f"{key}: {err}")
            account.last_refreshed_at = time.time()
            account.last_error = "; ".join(errors)
        log.info("refreshed account %s (%s)", account.id, "ok" if not errors else "with errors")
        self.pool.changed(account)

    async def reprobe(self, account: Account) -> None:
        """Probe every dialect again (admin), then refresh with whatever auto picked."""
        try:
            await self.models.probe(account)
        except UpstreamError as err:
            account.last_error = f"probe: {err.failure.value}: {err.message}"
            self.pool.changed(account)
            return
        await self.refresh(account)

    async def _usage(self, account: Account) -> dict[str, Any]:
        headers = {
            **self._headers(account),
            "content-type": "application/json",
            "connect-protocol-version": "1",
        }
        return await self._json(account, "POST", USAGE_PATH, headers, b"{}")

    async def _membership(self, account: Account) -> dict[str, Any]:
        return await self._json(account, "GET", PROFILE_PATH, self._headers(account), None)

    async def _json(
        self, account: Account, method: str, path: str, headers: dict[str, str], body: bytes | None
    ) -> dict[str, Any]:
        try:
            client = self._http.get(account.proxy)
            response = await client.request(method, path, headers=headers, content=body)
        except httpx.HTTPError as err:
            raise _DetailError(f"unreachable ({type(err).__name__})") from None
        if response.status_code != 200:
            raise _DetailError(f"HTTP {response.status_code}")
        if len(response.content) > MAX_DETAIL_BYTES:
            raise _DetailError("answer too large")
        try:
            data = response.json()
        except ValueError:
            raise _DetailError("not JSON") from None
        if not isinstance(data, dict):
            raise _DetailError("not a JSON object")
        return data

    # --- the schedule ---

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="account-refresh")

    def due(self, now: float) -> list[Account]:
        interval = self.settings.refresh_interval
        return [
            a
            for a in self.pool.all()
            if a.enabled and (a.last_refreshed_at is None or a.last_refreshed_at + interval <= now)
        ]

    async def refresh_due(self) -> None:
        due = self.due(time.time())
        if due:
            await asyncio.gather(*(self.refresh(a) for a in due), return_exceptions=True)

    async def _run(self) -> None:
        # Check often enough that a short interval (tests) is honoured, rarely enough to be free.
        tick = max(0.5, min(60.0, self.settings.refresh_interval / 4))
        while True:
            try:
                await self.refresh_due()
            except Exception:
                log.exception("scheduled account refresh failed")
            await asyncio.sleep(tick)


class _DetailError(Exception):
    """A usage/plan fetch failed; the message is safe to show (no token, no body)."""
