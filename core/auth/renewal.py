"""Keeps each account's access token alive: renewed before its `exp` (refresh token grant, or a
new exchange of its user API key), and once more when Cursor refuses it mid-flight. A permanent
refusal disables the account with the reason; a transient one is retried on the next round."""

from __future__ import annotations

import asyncio
import logging
import time

from core.auth.cursor_auth import AuthError, CursorAuth, Tokens
from core.config import CoreSettings
from core.pool.accounts import Account, AccountPool
from core.upstream.tokens import jwt_claims

log = logging.getLogger("cursorgate.auth")

TICK_S = 15.0


def expires_at(token: str) -> float | None:
    exp = jwt_claims(token).get("exp")
    if isinstance(exp, int | float) and 0 < exp < 1e11:
        return float(exp)
    return None


class Renewer:
    def __init__(self, settings: CoreSettings, pool: AccountPool, auth: CursorAuth) -> None:
        self.settings = settings
        self.pool = pool
        self.auth = auth
        self._locks: dict[str, asyncio.Lock] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="token-renewal")

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.auth.aclose()

    @staticmethod
    def renewable(account: Account) -> bool:
        return bool(account.refresh_token or account.api_key)

    def due(self, account: Account, now: float) -> bool:
        exp = expires_at(account.token)
        return exp is not None and exp - now <= self.settings.token_renew_before

    async def renew(self, account: Account, *, seen_token: str | None = None) -> bool:
        """Renews the token now. `seen_token`: the token a failed call used; when another task
        renewed it meanwhile, that counts as success without asking Cursor again."""
        if not self.renewable(account):
            return False
        lock = self._locks.setdefault(account.id, asyncio.Lock())
        async with lock:
            if seen_token is not None and account.token != seen_token:
                return True
            try:
                tokens = await self._fetch(account)
            except AuthError as err:
                state = dict(account.auth_state)
                state["error"] = str(err)
                state["failed_at"] = time.time()
                account.auth_state = state
                if err.permanent:
                    self.pool.disable(account, f"Cursor refused to renew the token: {err}")
                else:
                    self.pool.changed(account)
                log.warning("account %s: token renewal failed: %s", account.id, err)
                return False
            account.token = tokens.access_token
            if tokens.refresh_token and not account.api_key:
                account.refresh_token = tokens.refresh_token
            renewals = account.auth_state.get("renewals", 0)
            account.auth_state = {
                "renewed_at": time.time(),
                "renewals": (renewals if isinstance(renewals, int) else 0) + 1,
                "error": "",
            }
            self.pool.changed(account)
            log.info("account %s: token renewed", account.id)
            return True

    async def _fetch(self, account: Account) -> Tokens:
        if account.api_key:
            return await self.auth.exchange_api_key(account.api_key, account.proxy)
        return await self.auth.refresh(account.refresh_token, account.proxy)

    async def renew_due(self) -> None:
        now = time.time()
        due = [a for a in self.pool.all() if a.enabled and self.renewable(a) and self.due(a, now)]
        if due:
            await asyncio.gather(*(self.renew(a) for a in due), return_exceptions=True)

    async def _run(self) -> None:
        tick = max(0.5, min(TICK_S, self.settings.token_renew_before / 4))
        while True:
            try:
                await self.renew_due()
            except Exception:
                log.exception("scheduled token renewal failed")
            await asyncio.sleep(tick)
