"""core/licensing/limits.py on an injected clock: UTC calendar periods, the sliding minute, retry delays and
budget resets, with the expected instants written out by hand."""

from __future__ import annotations

import datetime as dt

import pytest

from core.errors import Code, GatewayError
from core.licensing.licenses import License
from core.licensing.limits import LocalLimits, period_end, period_start


def at(text: str) -> float:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC).timestamp()


@pytest.mark.parametrize(
    ("period", "now", "start", "end"),
    [
        ("day", "2026-11-26T08:40:00", "2026-11-26T00:00:00", "2026-11-27T00:00:00"),
        ("day", "2026-12-31T23:59:59", "2026-12-31T00:00:00", "2027-01-01T00:00:00"),
        # 2026-11-26 is a Thursday: its week began on Monday the 23rd.
        ("week", "2026-11-26T08:40:00", "2026-11-23T00:00:00", "2026-11-30T00:00:00"),
        ("week", "2026-11-23T00:00:00", "2026-11-23T00:00:00", "2026-11-30T00:00:00"),
        ("month", "2026-11-26T08:40:00", "2026-11-01T00:00:00", "2026-12-01T00:00:00"),
        ("month", "2026-12-15T12:00:00", "2026-12-01T00:00:00", "2027-01-01T00:00:00"),
        ("month", "2028-02-10T00:00:00", "2028-02-01T00:00:00", "2028-03-01T00:00:00"),
    ],
)
def test_calendar_periods_in_utc(period: str, now: str, start: str, end: str) -> None:
    assert period_start(period, at(now)) == at(start)
    assert period_end(period, at(start)) == at(end)


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def refused(limits: LocalLimits, lic: License, estimate: int) -> GatewayError:
    with pytest.raises(GatewayError) as exc:
        limits.reserve(lic, estimate)
    return exc.value


def test_rpm_slides_and_says_when_a_request_fits() -> None:
    clock = Clock(1000.0)
    limits = LocalLimits(clock=clock)
    lic = License(id="l", key_hash="h", rpm_limit=2)
    limits.reserve(lic, 1)
    clock.now = 1010.0
    limits.reserve(lic, 1)
    clock.now = 1030.0
    err = refused(limits, lic, 1)
    assert (err.code, err.reason, err.retry_after_ms) == (
        Code.ERROR_CODE_RATE_LIMITED,
        "LICENSE_RPM_EXCEEDED",
        30_000,
    )
    clock.now = 1060.0  # the first request (at 1000) has left the window
    limits.reserve(lic, 1)


def test_tpm_counts_real_usage_once_settled() -> None:
    clock = Clock(0.0)
    limits = LocalLimits(clock=clock)
    lic = License(id="l", key_hash="h", tpm_limit=100)
    first = limits.reserve(lic, 30)
    clock.now = 20.0
    limits.reserve(lic, 30)
    limits.settle(first, 60)  # 60 + 30 in the minute now
    err = refused(limits, lic, 20)
    # 20 more fit once the first entry (60 tokens, at 0 s) leaves the window at 60 s.
    assert (err.reason, err.retry_after_ms) == ("LICENSE_TPM_EXCEEDED", 40_000)
    limits.reserve(lic, 10)
    assert refused(limits, lic, 101).reason == "LICENSE_TPM_EXCEEDED"


def test_budget_counts_reservations_then_usage_and_resets() -> None:
    charged: list[tuple[str, float, int]] = []
    clock = Clock(at("2026-11-26T23:00:00"))
    limits = LocalLimits(lambda lic, start, n: charged.append((lic.id, start, n)), clock=clock)
    lic = License(id="l", key_hash="h", token_budget=100, budget_period="day")
    a = limits.reserve(lic, 40)
    limits.reserve(lic, 40)
    err = refused(limits, lic, 40)  # 80 reserved + 40 > 100
    assert (err.code, err.reason) == (Code.ERROR_CODE_QUOTA_EXCEEDED, "LICENSE_BUDGET_EXHAUSTED")
    assert err.retry_after_ms == 3_600_000  # an hour to midnight UTC
    limits.settle(a, 10)
    assert lic.budget_used == 10 and charged == [("l", at("2026-11-26T00:00:00"), 10)]
    limits.reserve(lic, 40)  # 10 used + 40 reserved + 40 = 90
    clock.now = at("2026-11-27T00:00:01")
    limits.reserve(lic, 100)  # a new day: yesterday's use and reservations no longer count
    assert lic.budget_used == 0 and lic.budget_period_start == at("2026-11-27T00:00:00")
