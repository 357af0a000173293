"""Per-license rate limits and token budgets, counted in this process: requests and tokens per
minute over a sliding 60-second window, and a token budget per calendar period in UTC.

A chat is checked and reserved in one step when core admits it (no await in between, so
concurrent requests cannot all take the last unit): one request, and an estimate of its prompt's
tokens against the minute and the budget. When the call ends, however it ends, the reservation
is settled to the tokens it really used. core/shared/limits.py keeps the same counts in Redis
for several replicas. Not here: the request quota (core/store/quota.py) and the concurrency cap.
"""

from __future__ import annotations

import calendar
import datetime as dt
import math
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from core.errors import Code, GatewayError
from core.licensing.licenses import License

WINDOW_S: Final = 60.0
PERIODS: Final = ("day", "week", "month")

RPM_EXCEEDED: Final = "LICENSE_RPM_EXCEEDED"
TPM_EXCEEDED: Final = "LICENSE_TPM_EXCEEDED"
BUDGET_EXHAUSTED: Final = "LICENSE_BUDGET_EXHAUSTED"

# (license, period start, tokens): real usage to add to the stored budget count.
BudgetSink = Callable[[License, float, int], None]
Clock = Callable[[], float]


def period_start(period: str, now: float) -> float:
    """The start of the UTC calendar period holding `now`: midnight, Monday's midnight, the 1st."""
    day = dt.datetime.fromtimestamp(now, dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "week":
        day -= dt.timedelta(days=day.weekday())
    elif period == "month":
        day = day.replace(day=1)
    return day.timestamp()


def period_end(period: str, start: float) -> float:
    begin = dt.datetime.fromtimestamp(start, dt.UTC)
    if period == "day":
        return (begin + dt.timedelta(days=1)).timestamp()
    if period == "week":
        return (begin + dt.timedelta(days=7)).timestamp()
    days = calendar.monthrange(begin.year, begin.month)[1]
    return (begin + dt.timedelta(days=days)).timestamp()


def has_limits(lic: License) -> bool:
    return lic.rpm_limit is not None or lic.tpm_limit is not None or lic.token_budget is not None


def roll_budget(lic: License, now: float) -> float:
    """The start of the license's current budget period; its count starts afresh in a new one."""
    start = period_start(lic.budget_period, now)
    if lic.budget_period_start != start:
        lic.budget_used, lic.budget_period_start = 0, start
    return start


def _seconds(ms: float) -> str:
    return f"{max(1, math.ceil(ms / 1000))} s"


def rpm_exceeded(limit: int, retry_ms: int) -> GatewayError:
    return GatewayError(
        Code.ERROR_CODE_RATE_LIMITED,
        f"This license's limit of {limit} requests per minute is reached; retry in {_seconds(retry_ms)}.",
        retry_after_ms=max(1, retry_ms),
        reason=RPM_EXCEEDED,
    )


def tpm_exceeded(limit: int, estimate: int, retry_ms: int) -> GatewayError:
    if estimate > limit:
        message = (
            f"This request's prompt (about {estimate} tokens) is larger than the license's limit of "
            f"{limit} tokens per minute."
        )
    else:
        message = (
            f"This license's limit of {limit} tokens per minute is reached; retry in {_seconds(retry_ms)}."
        )
    return GatewayError(
        Code.ERROR_CODE_RATE_LIMITED, message, retry_after_ms=max(1, retry_ms), reason=TPM_EXCEEDED
    )


def budget_exhausted(lic: License, resets_at: float, now: float) -> GatewayError:
    when = dt.datetime.fromtimestamp(resets_at, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return GatewayError(
        Code.ERROR_CODE_QUOTA_EXCEEDED,
        f"This license's token budget of {lic.token_budget} tokens per {lic.budget_period} is used up; "
        f"it resets at {when}.",
        retry_after_ms=max(1, int((resets_at - now) * 1000)),
        reason=BUDGET_EXHAUSTED,
    )


@dataclass(slots=True)
class Reservation:
    """What one admitted chat holds until it is settled."""

    license: License
    estimate: int
    id: str = field(default_factory=lambda: secrets.token_hex(8))
    # The budget period it counts in (0: the license has no budget).
    budget_start: float = 0.0
    # Counted in Redis (core/shared/limits.py) rather than here.
    shared: bool = False
    settled: bool = False


@dataclass(slots=True)
class _Counts:
    """One license's window and budget reservations in this process."""

    # Admission times (Unix seconds), oldest first.
    requests: deque[float] = field(default_factory=deque)
    # Reservation id -> [admission time, tokens]: the estimate, then the real usage. Oldest first.
    tokens: dict[str, list[float]] = field(default_factory=dict)
    # Reservation id -> (budget period start, estimate), for calls in flight against the budget.
    reserved: dict[str, tuple[float, int]] = field(default_factory=dict)


class LocalLimits:
    """Limits counted in this process (one core, or Redis away)."""

    def __init__(self, on_budget: BudgetSink | None = None, clock: Clock = time.time) -> None:
        self.on_budget = on_budget
        self.clock = clock
        self._counts: dict[str, _Counts] = {}

    async def admit(self, lic: License, estimate: int) -> Reservation | None:
        """Checks the license's limits and reserves one request and `estimate` tokens; None when it
        has no limits. GatewayError (RESOURCE_EXHAUSTED) with the delay after which it would fit."""
        if not has_limits(lic):
            return None
        return self.reserve(lic, estimate)

    def reserve(self, lic: License, estimate: int) -> Reservation:
        now = self.clock()
        counts = self._counts.setdefault(lic.id, _Counts())
        horizon = now - WINDOW_S
        while counts.requests and counts.requests[0] <= horizon:
            counts.requests.popleft()
        for rid in [rid for rid, (at, _) in counts.tokens.items() if at <= horizon]:
            del counts.tokens[rid]
        if lic.rpm_limit is not None and len(counts.requests) >= lic.rpm_limit:
            raise rpm_exceeded(lic.rpm_limit, int((counts.requests[0] + WINDOW_S - now) * 1000))
        if lic.tpm_limit is not None:
            self._check_tpm(lic.tpm_limit, counts, estimate, now)
        reservation = Reservation(lic, estimate)
        if lic.token_budget is not None:
            start = roll_budget(lic, now)
            held = sum(n for begun, n in counts.reserved.values() if begun == start)
            if lic.budget_used + held + estimate > lic.token_budget:
                raise budget_exhausted(lic, period_end(lic.budget_period, start), now)
            reservation.budget_start = start
            counts.reserved[reservation.id] = (start, estimate)
        counts.requests.append(now)
        counts.tokens[reservation.id] = [now, float(estimate)]
        return reservation

    @staticmethod
    def _check_tpm(limit: int, counts: _Counts, estimate: int, now: float) -> None:
        used = sum(tokens for _, tokens in counts.tokens.values())
        if estimate > limit:
            raise tpm_exceeded(limit, estimate, int(WINDOW_S * 1000))
        if used + estimate <= limit:
            return
        # Fits once enough of the oldest entries have left the window.
        for at, tokens in counts.tokens.values():
            used -= tokens
            if used + estimate <= limit:
                raise tpm_exceeded(limit, estimate, int((at + WINDOW_S - now) * 1000))
        raise tpm_exceeded(limit, estimate, int(WINDOW_S * 1000))  # unreachable: estimate fits alone

    def settle(self, reservation: Reservation, tokens: int) -> None:
        """The call ended having used `tokens` (prompt and completion): replaces the estimate."""
        if reservation.settled:
            return
        reservation.settled = True
        lic = reservation.license
        counts = self._counts.get(lic.id)
        if counts is not None:
            entry = counts.tokens.get(reservation.id)
            if entry is not None:
                entry[1] = float(tokens)
            counts.reserved.pop(reservation.id, None)
        if reservation.budget_start:
            self.charge_budget(lic, reservation.budget_start, tokens)

    def charge_budget(self, lic: License, start: float, tokens: int) -> None:
        if lic.budget_period_start == start:
            lic.budget_used += tokens
        if tokens and self.on_budget is not None:
            self.on_budget(lic, start, tokens)

    async def budget_used(self, lic: License) -> int:
        """Tokens used in the license's current budget period."""
        if lic.token_budget is None:
            return lic.budget_used
        roll_budget(lic, self.clock())
        return lic.budget_used

    async def aclose(self) -> None:
        return None
