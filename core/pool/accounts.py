"""Cursor accounts and the pool that picks one per request."""

from __future__ import annotations

import contextlib
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from core.chat.catalog import ModelInfo
from core.pool.proxies import ProxyHealth

if TYPE_CHECKING:
    from core.shared.load import SharedLoad

DEFAULT_COOLDOWN_S = 60.0
# Conversations whose account the pool remembers (affinity); the least recently seen go first.
DEFAULT_AFFINITY_ENTRIES = 10_000


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
    # {"usage": {...}, "membership": {...}}: what Cursor's account endpoints answered.
    details: dict[str, object] = field(default_factory=dict)
    created_at: float = field(default_factory=time.time)
    last_refreshed_at: float | None = None
    # Which Cursor chat RPC to speak for this account: "auto" (the gateway setting decides and
    # probes) or a dialect name the operator pinned.
    dialect: str = "auto"
    # What auto found: {"active": name, "probes": {name: {"ok", "detail", "at"}}}.
    dialect_state: dict[str, object] = field(default_factory=dict)
    # What renews `token` before it expires: an OAuth refresh token (rotated by Cursor), or a user
    # API key (crsr_...) that is exchanged again. Secrets, like the token.
    refresh_token: str = ""
    api_key: str = ""
    # {"renewed_at", "renewals", "error"}: the last renewal's outcome, for the admin page.
    auth_state: dict[str, object] = field(default_factory=dict)
    # The account's own outbound proxy URL ("" : the gateway's route). A secret like the token
    # (it may carry a password): shown only through core.pool.proxies.mask_proxy.
    proxy: str = ""

    def healthy(self, now: float) -> bool:
        return self.enabled and self.cooldown_until <= now

    def offers(self, model: str) -> bool:
        return self.models is None or model in self.models

    def status(self, now: float) -> str:
        if not self.enabled:
            return "disabled"
        return "cooling_down" if self.cooldown_until > now else "active"

    def _plan(self) -> dict[str, object]:
        usage = self.details.get("usage")
        plan = usage.get("planUsage") if isinstance(usage, dict) else None
        return plan if isinstance(plan, dict) else {}

    def remaining_credit(self) -> float | None:
        """Plan credit left this cycle (cents), from GetCurrentPeriodUsage's `planUsage`:
        `limit - totalSpend`, or `remaining` when Cursor sends no limit. None: not known."""
        plan = self._plan()
        limit, spent, remaining = _number(plan.get("limit")), _number(plan.get("totalSpend")), None
        if limit is not None and spent is not None:
            remaining = limit - spent
        elif (left := _number(plan.get("remaining"))) is not None:
            remaining = left
        return None if remaining is None else max(0.0, remaining)

    def plan_used_percent(self) -> float | None:
        """Share of the plan used (0-100): `planUsage.totalPercentUsed`, else totalSpend / limit."""
        plan = self._plan()
        percent = _number(plan.get("totalPercentUsed"))
        if percent is not None:
            return percent
        limit, spent = _number(plan.get("limit")), _number(plan.get("totalSpend"))
        if limit and spent is not None and limit > 0:
            return 100.0 * spent / limit
        return None


def _number(value: object) -> float | None:
    """A JSON number, or an int64 that Connect+JSON sent as a string."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value) if value == value else None  # NaN is no number
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return None
        return number if number == number and abs(number) != float("inf") else None
    return None


@dataclass(slots=True)
class RequestTrace:
    """Which account served a request, for the request log (filled by AccountPool.lease)."""

    account_id: str = ""


# Set by the chat service around a request; the pool fills it in without a signature change
# along the router in between.
TRACE: ContextVar[RequestTrace | None] = ContextVar("cursorgate_trace", default=None)


class AccountPool:
    """Least-loaded, then least-recently-used, among healthy accounts offering the model whose
    proxy (if any) is not down. Accounts near their plan limit come last: they serve only when no
    other one can. With affinity on, a conversation's account comes first while it is healthy.

    `listener` is told about every state change worth persisting (cool-down, disable, errors).
    """

    def __init__(
        self,
        accounts: list[Account] | None = None,
        listener: Callable[[Account], None] | None = None,
        *,
        proxies: ProxyHealth | None = None,
        near_limit_percent: float = 0.0,
        affinity: bool = False,
        affinity_entries: int = DEFAULT_AFFINITY_ENTRIES,
    ) -> None:
        self._accounts: dict[str, Account] = {a.id: a for a in accounts or []}
        self.listener = listener
        self.proxies = proxies or ProxyHealth()
        # At or above this share of the plan used (0-100), an account is "near its limit"; 0: off.
        self.near_limit_percent = near_limit_percent
        self.affinity = affinity
        self._affinity_entries = max(1, affinity_entries)
        # Conversation key -> the account that served it last.
        self._affine: OrderedDict[str, str] = OrderedDict()
        # Told when a conversation gets a new account here (core/shared/state.py passes it on, so
        # the other replicas send the conversation's next requests to the same account): (key, id).
        self.on_affinity_change: Callable[[str, str], None] | None = None
        # Told of each cool-down and disable this replica decides (core/shared/state.py passes them on
        # to the other replicas): (account, "cool_down" or "disable", reason).
        self.on_shared_change: Callable[[Account, str, str], None] | None = None
        # Calls in flight per account over all core replicas (core/shared/load.py, with Redis);
        # None: this process' own counts order the candidates.
        self.shared_load: SharedLoad | None = None

    def add(self, account: Account) -> None:
        self._accounts[account.id] = account

    def remove(self, account_id: str) -> Account | None:
        return self._accounts.pop(account_id, None)

    def get(self, account_id: str) -> Account | None:
        return self._accounts.get(account_id)

    def all(self) -> list[Account]:
        return list(self._accounts.values())

    def near_limit(self, account: Account) -> bool:
        if self.near_limit_percent <= 0:
            return False
        used = account.plan_used_percent()
        return used is not None and used >= self.near_limit_percent

    def usable(self, account: Account, now: float) -> bool:
        return account.healthy(now) and self.proxies.down(account.proxy, now) is None

    def candidates(self, model: str, affinity_key: str = "") -> list[Account]:
        now = time.time()
        usable = [a for a in self._accounts.values() if self.usable(a, now) and a.offers(model)]
        ordered = sorted(usable, key=lambda a: (self.near_limit(a), a.in_flight, a.last_used))
        if self.affinity and affinity_key and ordered:
            sticky = self._accounts.get(self._affine.get(affinity_key, ""))
            # The conversation's account while it is usable; a near-limit one only when every
            # other account is near its limit too.
            if sticky in ordered and (not self.near_limit(sticky) or self.near_limit(ordered[0])):
                ordered.remove(sticky)
                ordered.insert(0, sticky)
        return ordered

    def affine_account(self, affinity_key: str) -> str:
        """The id of the account the conversation was last served by ("" if none)."""
        return self._affine.get(affinity_key, "") if self.affinity and affinity_key else ""

    def remember(self, affinity_key: str, account: Account) -> None:
        """The conversation was served by `account`: its next requests go there too."""
        if not self.affinity or not affinity_key:
            return
        changed = self._affine.get(affinity_key) != account.id
        self._set_affine(affinity_key, account.id)
        # Only a change is announced: a conversation's later turns on the same account cost nothing.
        if changed and self.on_affinity_change is not None:
            self.on_affinity_change(affinity_key, account.id)

    def remember_from_peer(self, affinity_key: str, account_id: str) -> bool:
        """Another replica served the conversation on `account_id`. False (nothing kept) when
        affinity is off here or the account is not in this replica's pool."""
        if not self.affinity or not affinity_key or account_id not in self._accounts:
            return False
        self._set_affine(affinity_key, account_id)
        return True

    def _set_affine(self, affinity_key: str, account_id: str) -> None:
        self._affine[affinity_key] = account_id
        self._affine.move_to_end(affinity_key)
        while len(self._affine) > self._affinity_entries:
            self._affine.popitem(last=False)

    def offered_anywhere(self, model: str) -> bool:
        return any(a.enabled and a.offers(model) for a in self._accounts.values())

    def next_available_in(self, model: str) -> float:
        """Seconds until a cooling-down account (or one behind a proxy that is down) offering the
        model is back (0 if none waits)."""
        now = time.time()
        waits = []
        for a in self._accounts.values():
            if a.enabled and a.offers(model):
                down = self.proxies.down(a.proxy, now)
                waits.append(max(a.cooldown_until, down.until if down else 0.0) - now)
        return max(0.0, min(waits)) if waits else 0.0

    @contextlib.contextmanager
    def lease(self, account: Account) -> Iterator[Account]:
        account.in_flight += 1
        account.last_used = time.time()
        account.requests += 1
        trace = TRACE.get()
        if trace is not None:
            trace.account_id = account.id
        try:
            yield account
        finally:
            account.in_flight -= 1

    @contextlib.asynccontextmanager
    async def lease_least_loaded(self, choices: Sequence[Account]) -> AsyncIterator[Account]:
        """One of `choices` (non-empty, in `candidates` order), leased for the block: the first,
        or with shared counts the one with the fewest calls in flight over all replicas."""
        if self.shared_load is None:
            with self.lease(choices[0]) as account:
                yield account
            return
        async with self.shared_load.lease(choices) as chosen:
            with self.lease(chosen) as account:
                yield account

    def changed(self, account: Account) -> None:
        if self.listener is not None:
            self.listener(account)

    def cool_down(self, account: Account, seconds: float | None, reason: str) -> None:
        account.cooldown_until = time.time() + (seconds if seconds and seconds > 0 else DEFAULT_COOLDOWN_S)
        account.last_error = reason
        account.failures += 1
        self.changed(account)
        if self.on_shared_change is not None:
            self.on_shared_change(account, "cool_down", reason)

    def cool_down_from_peer(self, account_id: str, until: float, reason: str) -> bool:
        """Another core replica cooled this account down: honour it here too. Not persisted nor
        passed on again (that replica did both); a later end than ours wins."""
        account = self._accounts.get(account_id)
        if account is None or until <= account.cooldown_until:
            return False
        account.cooldown_until = until
        account.last_error = reason
        return True

    def disable(self, account: Account, reason: str) -> None:
        account.enabled = False
        account.disabled_reason = reason
        account.last_error = reason
        account.failures += 1
        self.changed(account)
        if self.on_shared_change is not None:
            self.on_shared_change(account, "disable", reason)

    def disable_from_peer(self, account_id: str, reason: str) -> bool:
        """Another core replica disabled this account (e.g. Cursor rejected its token): stop using
        it here too. Not persisted nor passed on again; re-enabling goes through the store."""
        account = self._accounts.get(account_id)
        if account is None or not account.enabled:
            return False
        account.enabled = False
        account.disabled_reason = reason
        account.last_error = reason
        return True

    def enable_from_peer(self, account_id: str) -> bool:
        """The admin re-enabled this account on another core replica: use it here again, afresh
        (that replica stored it)."""
        account = self._accounts.get(account_id)
        if account is None or account.enabled:
            return False
        account.enabled = True
        account.disabled_reason = ""
        account.cooldown_until = 0.0
        return True

    def admin_toggled(self, account: Account) -> None:
        """The admin enabled or disabled the account here: the other replicas follow at once."""
        if self.on_shared_change is not None:
            kind = "enable" if account.enabled else "disable"
            self.on_shared_change(account, kind, account.disabled_reason)

    def record_error(self, account: Account, reason: str) -> None:
        account.last_error = reason
        account.failures += 1
        self.changed(account)
