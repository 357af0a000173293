"""Logins started through the admin API ("Add by login"): Cursor's PKCE login as `cursorgate login`
runs it, but polled by core in the background. Each login is bounded by its expiry, at most
MAX_PENDING wait at once, finished ones are forgotten after KEEP_S, and all are cancelled when
core stops."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from core.auth.cursor_auth import AuthError, CursorAuth, LoginStart, Tokens
from core.auth.login import POLL_FIRST_S, POLL_GROWTH, POLL_MAX_S

log = logging.getLogger("cursorgate.auth")

MAX_PENDING = 16
# Finished (or expired) logins answer GetAccountLogin this long, then are forgotten.
KEEP_S = 3600.0


class TooManyLogins(Exception):
    pass


@dataclass
class Login:
    id: str
    start: LoginStart
    label: str
    proxy: str
    dialect: str
    expires_at: float
    # "pending", "done", "expired" or "failed".
    state: str = "pending"
    account_id: str = ""
    error: str = ""
    finished_at: float = 0.0
    task: asyncio.Task[None] | None = field(default=None, repr=False)


# Adds the account the login produced; returns its id. Raises with a message safe to show.
AddAccount = Callable[[Tokens, "Login"], Awaitable[str]]


class AccountLogins:
    def __init__(self, auth: CursorAuth, add: AddAccount, timeout_s: float) -> None:
        self.auth = auth
        self.add = add
        self.timeout_s = timeout_s
        self._logins: dict[str, Login] = {}

    def start(self, label: str, proxy: str, dialect: str) -> Login:
        self._forget_old()
        if sum(1 for x in self._logins.values() if x.state == "pending") >= MAX_PENDING:
            raise TooManyLogins(f"{MAX_PENDING} logins are already waiting for a sign-in; try again later.")
        login = Login(
            id=f"login_{secrets.token_hex(8)}",
            start=self.auth.start_login(),
            label=label,
            proxy=proxy,
            dialect=dialect,
            expires_at=time.time() + self.timeout_s,
        )
        self._logins[login.id] = login
        login.task = asyncio.create_task(self._poll(login), name=f"account-login {login.id}")
        return login

    def get(self, login_id: str) -> Login | None:
        self._forget_old()
        return self._logins.get(login_id)

    async def aclose(self) -> None:
        tasks = [x.task for x in self._logins.values() if x.task is not None and not x.task.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _forget_old(self) -> None:
        now = time.time()
        for login in list(self._logins.values()):
            if login.state != "pending" and login.finished_at + KEEP_S < now:
                del self._logins[login.id]

    def _finish(self, login: Login, state: str, error: str = "") -> None:
        login.state, login.error, login.finished_at = state, error, time.time()

    async def _poll(self, login: Login) -> None:
        wait = POLL_FIRST_S
        try:
            while True:
                remaining = login.expires_at - time.time()
                if remaining <= 0:
                    self._finish(login, "expired", "Nobody signed in before the login expired.")
                    return
                await asyncio.sleep(min(wait, remaining))
                wait = min(wait * POLL_GROWTH, POLL_MAX_S)
                try:
                    tokens = await self.auth.poll_login(login.start, login.proxy)
                except AuthError as err:
                    if err.status is not None and err.status < 500:
                        self._finish(login, "failed", str(err))
                        return
                    continue  # unreachable, or a passing outage: poll again
                if tokens is None:
                    continue
                try:
                    login.account_id = await self.add(tokens, login)
                except Exception as err:  # the adder's messages are written for the operator
                    self._finish(login, "failed", str(err)[:300] or type(err).__name__)
                    return
                self._finish(login, "done")
                log.info("login %s added account %s", login.id, login.account_id)
                return
        except asyncio.CancelledError:
            if login.state == "pending":
                self._finish(login, "failed", "Core stopped before the sign-in finished.")
            raise
