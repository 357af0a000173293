"""Cursor accounts and the pool that picks one per request."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from core.catalog import ModelInfo

DEFAULT_COOLDOWN_S = 60.0


@dataclass(slots=True)
class Account:
    id: str
    # The normalised JWT. Never logged, never returned whole.
    token: str
    label: str = ""
    enabled: bool = True
    client_version: str | None = None
    # What the account offers per AvailableModels; None until fetched.
    models: dict[str, ModelInfo] | None = None
    cooldown_until: float = 0.0
    disabled_reason: str = ""
    last_error: str = ""
    last_used: float = 0.0
    in_flight: int = 0
    requests: int = 0
    failures: int = 0
    details: dict[str, object] = field(default_factory=dict)

    def healthy(self, now: float) -> bool:
        return self.enabled and self.cooldown_until <= now

    def offers(self, model: str) -> bool:
        return self.models is None or model in self.models


class AccountPool:
    """Least-loaded, then least-recently-used, among healthy accounts offering the model."""

    def __init__(self, accounts: list[Account] | None = None) -> None:
        self._accounts: dict[str, Account] = {a.id: a for a in accounts or []}

    def add(self, account: Account) -> None:
        self._accounts[account.id] = account

    def remove(self, account_id: str) -> Account | None:
        return self._accounts.pop(account_id, None)

    def get(self, account_id: str) -> Account | None:
        return self._accounts.get(account_id)

    def all(self) -> list[Account]:
        return list(self._accounts.values())

    def candidates(self, model: str) -> list[Account]:
        now = time.time()
        usable = [a for a in self._accounts.values() if a.healthy(now) and a.offers(model)]
        return sorted(usable, key=lambda a: (a.in_flight, a.last_used))

    def offered_anywhere(self, model: str) -> bool:
        return any(a.enabled and a.offers(model) for a in self._accounts.values())

    def next_available_in(self, model: str) -> float:
        """Seconds until a cooling-down account offering the model is back (0 if none cools)."""
        now = time.time()
        waits = [a.cooldown_until - now for a in self._accounts.values() if a.enabled and a.offers(model)]
        return max(0.0, min(waits)) if waits else 0.0

    @contextlib.contextmanager
    def lease(self, account: Account) -> Iterator[Account]:
        account.in_flight += 1
        account.last_used = time.time()
        account.requests += 1
        try:
            yield account
        finally:
            account.in_flight -= 1

    def cool_down(self, account: Account, seconds: float | None, reason: str) -> None:
        account.cooldown_until = time.time() + (seconds if seconds and seconds > 0 else DEFAULT_COOLDOWN_S)
        account.last_error = reason
        account.failures += 1

    def disable(self, account: Account, reason: str) -> None:
        account.enabled = False
        account.disabled_reason = reason
        account.last_error = reason
        account.failures += 1
