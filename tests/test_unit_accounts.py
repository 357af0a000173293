"""The account pool (core/accounts.py): which accounts are candidates and in what order, how long a
cool-down lasts, what a disable records, and what peers and listeners are told. Expected values
are written out."""

from __future__ import annotations

import pytest

from core.accounts import TRACE, Account, AccountPool, RequestTrace
from core.catalog import ModelInfo

NOW = 1_800_000_000.0
MODEL = "gpt-5.2"


@pytest.fixture(autouse=True)
def frozen_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("core.accounts.time.time", lambda: NOW)


def offering(*models: str) -> dict[str, ModelInfo]:
    return {m: ModelInfo(id=m) for m in models}


def test_account_health_offer_and_status() -> None:
    account = Account(id="a", token="t")
    assert account.healthy(NOW) and account.offers("anything") and account.status(NOW) == "active"
    account.models = offering(MODEL)
    assert account.offers(MODEL) and not account.offers("other")
    account.cooldown_until = NOW
    assert account.healthy(NOW) and account.status(NOW) == "active"  # the cool-down ends at NOW
    account.cooldown_until = NOW + 1
    assert not account.healthy(NOW) and account.status(NOW) == "cooling_down"
    account.enabled = False
    account.cooldown_until = 0
    assert not account.healthy(NOW) and account.status(NOW) == "disabled"


def test_candidates_are_healthy_offering_least_loaded_then_least_recent() -> None:
    pool = AccountPool(
        [
            Account(id="busy", token="t", in_flight=2, last_used=1),
            Account(id="recent", token="t", last_used=50),
            Account(id="old", token="t", last_used=10),
            Account(id="cooling", token="t", cooldown_until=NOW + 5),
            Account(id="off", token="t", enabled=False),
            Account(id="elsewhere", token="t", models=offering("other")),
            Account(id="offers", token="t", models=offering(MODEL), last_used=30),
        ]
    )
    assert [a.id for a in pool.candidates(MODEL)] == ["old", "offers", "recent", "busy"]
    assert [a.id for a in pool.candidates("other")] == [
        "elsewhere",
        "old",
        "recent",
        "busy",
    ]  # never used comes first


def test_offered_anywhere_counts_enabled_accounts_even_cooling() -> None:
    pool = AccountPool(
        [
            Account(id="c", token="t", models=offering("cool"), cooldown_until=NOW + 9),
            Account(id="d", token="t", models=offering("gone"), enabled=False),
        ]
    )
    assert pool.offered_anywhere("cool")
    assert not pool.offered_anywhere("gone")
    assert not pool.offered_anywhere("never")


def test_next_available_in_is_the_shortest_cooldown_of_offering_accounts() -> None:
    pool = AccountPool(
        [
            Account(id="a", token="t", models=offering(MODEL), cooldown_until=NOW + 30),
            Account(id="b", token="t", models=offering(MODEL), cooldown_until=NOW + 12),
            Account(id="c", token="t", models=offering("other"), cooldown_until=NOW + 2),
            Account(id="d", token="t", models=offering(MODEL), cooldown_until=NOW + 1, enabled=False),
        ]
    )
    assert pool.next_available_in(MODEL) == 12
    assert pool.next_available_in("other") == 2
    assert pool.next_available_in("nobody") == 0.0
    pool.add(Account(id="e", token="t", models=offering(MODEL)))  # healthy now
    assert pool.next_available_in(MODEL) == 0.0


def test_lease_counts_and_traces() -> None:
    account = Account(id="a", token="t")
    pool = AccountPool([account])
    trace = RequestTrace()
    token = TRACE.set(trace)
    try:
        with pool.lease(account) as leased:
            assert leased is account
            assert (account.in_flight, account.requests, account.last_used) == (1, 1, NOW)
            assert trace.account_id == "a"
            with pool.lease(account):
                assert account.in_flight == 2
        assert (account.in_flight, account.requests) == (0, 2)
    finally:
        TRACE.reset(token)
    with pytest.raises(RuntimeError), pool.lease(account):
        raise RuntimeError("upstream failed")
    assert account.in_flight == 0 and account.requests == 3


def test_cool_down_records_and_tells_listener_and_peers() -> None:
    changed: list[str] = []
    shared: list[tuple[str, str, str]] = []
    account = Account(id="a", token="t", failures=2)
    pool = AccountPool([account], listener=lambda a: changed.append(a.id))
    pool.on_shared_change = lambda a, what, why: shared.append((a.id, what, why))
    pool.cool_down(account, 30, "rate_limited: slow down")
    assert account.cooldown_until == NOW + 30
    assert account.last_error == "rate_limited: slow down"
    assert account.failures == 3
    assert changed == ["a"]
    assert shared == [("a", "cool_down", "rate_limited: slow down")]


@pytest.mark.parametrize(
    ("seconds", "lasts"), [(None, 60.0), (0, 60.0), (-5, 60.0), (0.5, 0.5), (1, 1.0), (90, 90.0)]
)
def test_cool_down_length(seconds: float | None, lasts: float) -> None:
    account = Account(id="a", token="t")
    AccountPool([account]).cool_down(account, seconds, "r")
    assert account.cooldown_until == NOW + lasts


def test_cool_down_from_peer_only_extends() -> None:
    account = Account(id="a", token="t", cooldown_until=NOW + 10, failures=1)
    changed: list[str] = []
    pool = AccountPool([account], listener=lambda a: changed.append(a.id))
    assert pool.cool_down_from_peer("a", NOW + 10, "same end") is False
    assert pool.cool_down_from_peer("a", NOW + 5, "earlier") is False
    assert account.cooldown_until == NOW + 10 and account.last_error == ""
    assert pool.cool_down_from_peer("a", NOW + 20, "peer: rate_limited") is True
    assert account.cooldown_until == NOW + 20 and account.last_error == "peer: rate_limited"
    assert pool.cool_down_from_peer("missing", NOW + 20, "x") is False
    assert changed == [] and account.failures == 1  # the peer persisted and counted it


def test_disable_records_and_tells_listener_and_peers() -> None:
    changed: list[str] = []
    shared: list[tuple[str, str, str]] = []
    account = Account(id="a", token="t")
    pool = AccountPool([account], listener=lambda a: changed.append(a.id))
    pool.on_shared_change = lambda a, what, why: shared.append((a.id, what, why))
    pool.disable(account, "Cursor rejected the token: bad")
    assert not account.enabled
    assert account.disabled_reason == account.last_error == "Cursor rejected the token: bad"
    assert account.failures == 1
    assert changed == ["a"] and shared == [("a", "disable", "Cursor rejected the token: bad")]


def test_disable_from_peer() -> None:
    account = Account(id="a", token="t")
    changed: list[str] = []
    pool = AccountPool([account], listener=lambda a: changed.append(a.id))
    assert pool.disable_from_peer("a", "peer: token rejected") is True
    assert not account.enabled
    assert account.disabled_reason == account.last_error == "peer: token rejected"
    assert pool.disable_from_peer("a", "again") is False
    assert account.disabled_reason == "peer: token rejected"
    assert pool.disable_from_peer("missing", "x") is False
    assert changed == [] and account.failures == 0


def test_record_error_counts_and_tells_the_listener() -> None:
    changed: list[str] = []
    account = Account(id="a", token="t", failures=4)
    pool = AccountPool([account], listener=lambda a: changed.append(a.id))
    pool.record_error(account, "timeout: slow")
    assert account.last_error == "timeout: slow" and account.failures == 5 and account.enabled
    assert account.cooldown_until == 0.0
    assert changed == ["a"]


def test_no_listener_or_peers_is_fine() -> None:
    account = Account(id="a", token="t")
    pool = AccountPool([account])
    pool.cool_down(account, 1, "r")
    pool.disable(account, "r")
    pool.record_error(account, "r")
    assert account.failures == 3


def test_membership() -> None:
    a, b = Account(id="a", token="t"), Account(id="b", token="t")
    pool = AccountPool([a])
    assert pool.get("a") is a and pool.get("b") is None
    pool.add(b)
    assert [x.id for x in pool.all()] == ["a", "b"]
    assert pool.remove("a") is a and pool.remove("a") is None
    assert [x.id for x in pool.all()] == ["b"]
    assert AccountPool().all() == []
