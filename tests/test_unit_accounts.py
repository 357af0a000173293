"""The account pool (core/pool/accounts.py): which accounts are candidates and in what order, how long a
cool-down lasts, what a disable records, and what peers and listeners are told. Expected values
are written out."""

from __future__ import annotations

import pytest

from core.chat.catalog import ModelInfo
from core.pool.accounts import TRACE, Account, AccountPool, RequestTrace

NOW = 1_800_000_000.0
MODEL = "gpt-5.2"


@pytest.fixture(autouse=True)
def frozen_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("core.pool.accounts.time.time", lambda: NOW)


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


# --- replicas, plan usage and affinity (core/pool/accounts.py), expectations written out -------------


def test_a_peer_enabling_an_account_uses_it_again_afresh() -> None:
    account = Account(id="a", token="t", enabled=False, disabled_reason="Disabled by the admin.")
    account.cooldown_until = 10**10
    pool = AccountPool([account])
    assert pool.enable_from_peer("a") is True
    assert account.enabled and account.disabled_reason == "" and account.cooldown_until == 0.0
    assert pool.enable_from_peer("a") is False  # already enabled: nothing to do
    assert pool.enable_from_peer("unknown") is False


def test_an_admin_toggle_is_told_to_the_other_replicas_with_its_kind() -> None:
    told: list[tuple[str, str, str]] = []
    account = Account(id="a", token="t")
    pool = AccountPool([account])
    pool.admin_toggled(account)  # nobody listens: nothing happens, nothing fails
    pool.on_shared_change = lambda acc, kind, reason: told.append((acc.id, kind, reason))
    account.enabled, account.disabled_reason = False, "Disabled by the admin."
    pool.admin_toggled(account)
    account.enabled, account.disabled_reason = True, ""
    pool.admin_toggled(account)
    assert told == [("a", "disable", "Disabled by the admin."), ("a", "enable", "")]


def plan_usage(**plan: object) -> dict[str, object]:
    return {"usage": {"planUsage": plan}}


@pytest.mark.parametrize(
    ("plan", "credit", "percent"),
    [
        ({"limit": 2000, "totalSpend": 500}, 1500.0, 25.0),
        ({"limit": "2000", "totalSpend": "1500"}, 500.0, 75.0),  # int64 as JSON strings
        ({"limit": 2000, "totalSpend": 2500}, 0.0, 125.0),  # over the plan: nothing left
        ({"remaining": 321}, 321.0, None),  # no limit: Cursor's own remaining
        ({"remaining": "-5"}, 0.0, None),
        ({"limit": 2000, "totalSpend": 100, "remaining": 7}, 1900.0, 5.0),  # limit - spend wins
        ({"limit": 2000, "totalSpend": 100, "totalPercentUsed": 42}, 1900.0, 42.0),
        ({"limit": 0, "totalSpend": 0}, 0.0, None),  # no plan to divide by
        ({"limit": True, "totalSpend": 1}, None, None),  # a bool is no number
        ({"limit": "NaN", "totalSpend": 1}, None, None),
        ({"limit": "inf", "totalSpend": 1}, None, None),
        ({"limit": float("nan"), "totalSpend": 1}, None, None),
        ({"limit": "lots", "totalSpend": 1}, None, None),
        ({"limit": [1], "totalSpend": 1}, None, None),
        ({}, None, None),
    ],
)
def test_remaining_credit_and_plan_used_from_the_usage_answer(
    plan: dict[str, object], credit: float | None, percent: float | None
) -> None:
    account = Account(id="a", token="t", details=plan_usage(**plan))
    assert account.remaining_credit() == credit
    assert account.plan_used_percent() == percent


@pytest.mark.parametrize("details", [{}, {"usage": "nope"}, {"usage": {"planUsage": [1, 2]}}])
def test_no_plan_in_the_usage_answer_means_unknown(details: dict[str, object]) -> None:
    account = Account(id="a", token="t", details=details)
    assert account.remaining_credit() is None and account.plan_used_percent() is None


def test_near_limit_is_at_or_above_the_threshold_and_off_at_zero() -> None:
    at = Account(id="at", token="t", details=plan_usage(totalPercentUsed=90))
    under = Account(id="under", token="t", details=plan_usage(totalPercentUsed=89.9))
    pool = AccountPool([at, under], near_limit_percent=90)
    assert pool.near_limit(at) and not pool.near_limit(under)
    assert not AccountPool([at], near_limit_percent=0).near_limit(at)
    assert not AccountPool([at], near_limit_percent=-1).near_limit(at)


def test_a_sticky_near_limit_account_yields_to_one_that_is_not() -> None:
    near = Account(id="near", token="t", details=plan_usage(totalPercentUsed=95))
    fresh = Account(id="fresh", token="t", last_used=10**10)
    pool = AccountPool([near, fresh], near_limit_percent=90, affinity=True)
    pool.remember("conv", near)
    assert [a.id for a in pool.candidates("m", "conv")] == ["fresh", "near"]
    # Every account near its limit: the conversation's own comes first again.
    fresh.details = plan_usage(totalPercentUsed=99)
    assert [a.id for a in pool.candidates("m", "conv")] == ["near", "fresh"]


def test_affinity_off_or_without_a_key_remembers_nothing() -> None:
    a, b = Account(id="a", token="t"), Account(id="b", token="t", last_used=10**10)
    off = AccountPool([a, b], affinity=False)
    off.remember("conv", b)
    assert off.affine_account("conv") == "" and [x.id for x in off.candidates("m", "conv")] == ["a", "b"]
    by_default = AccountPool([a, b])  # affinity is opt-in (CURSORGATE_POOL_AFFINITY)
    by_default.remember("conv", b)
    assert by_default.affine_account("conv") == ""
    on = AccountPool([a, b], affinity=True)
    on.remember("", b)
    assert on.affine_account("") == ""
    on.remember("conv", b)
    assert on.affine_account("conv") == "b" and on.affine_account("other") == ""


def test_affinity_forgets_the_least_recently_seen_conversation_first() -> None:
    a, b = Account(id="a", token="t"), Account(id="b", token="t")
    pool = AccountPool([a, b], affinity=True, affinity_entries=2)
    pool.remember("one", a)
    pool.remember("two", b)
    pool.remember("one", b)  # seen again: now the most recent
    pool.remember("three", a)  # over two entries: "two" goes
    assert pool.affine_account("one") == "b"
    assert pool.affine_account("two") == ""
    assert pool.affine_account("three") == "a"
    assert AccountPool([a], affinity=True, affinity_entries=0)._affinity_entries == 1


def test_only_a_new_account_for_a_conversation_is_announced_to_the_other_replicas() -> None:
    a, b = Account(id="a", token="t"), Account(id="b", token="t")
    pool = AccountPool([a, b], affinity=True)
    told: list[tuple[str, str]] = []
    pool.on_affinity_change = lambda key, account: told.append((key, account))
    pool.remember("conv", a)
    pool.remember("conv", a)  # a later turn on the same account: nothing new to say
    pool.remember("conv", b)
    pool.remember("other", b)
    pool.remember("", a)
    assert told == [("conv", "a"), ("conv", "b"), ("other", "b")]
    off = AccountPool([a, b], affinity=False)
    off.on_affinity_change = lambda key, account: told.append((key, account))
    off.remember("conv", a)
    assert len(told) == 3


def test_a_conversation_another_replica_served_follows_its_account_here() -> None:
    a, b = Account(id="a", token="t"), Account(id="b", token="t", last_used=10**10)
    pool = AccountPool([a, b], affinity=True, affinity_entries=2)
    told: list[tuple[str, str]] = []
    pool.on_affinity_change = lambda key, account: told.append((key, account))
    assert pool.remember_from_peer("conv", "b") is True
    assert [x.id for x in pool.candidates("m", "conv")] == ["b", "a"]
    assert told == []  # a peer's news is not passed back on
    # An account this replica does not have, or no key: nothing kept.
    assert pool.remember_from_peer("elsewhere", "zz") is False
    assert pool.remember_from_peer("", "a") is False
    assert pool.affine_account("elsewhere") == "" and pool.affine_account("") == ""
    # The peer's entries count toward the same bound, least recently seen first out.
    assert pool.remember_from_peer("two", "a") and pool.remember_from_peer("three", "a")
    assert pool.affine_account("conv") == "" and pool.affine_account("three") == "a"
    assert AccountPool([a, b], affinity=False).remember_from_peer("conv", "b") is False


def test_the_wait_counts_a_down_proxy_and_the_cooldown_whichever_is_later() -> None:
    import time

    from core.pool.proxies import ProxyHealth

    health = ProxyHealth(retry_after_s=40)
    now = time.time()
    cooling = Account(id="cooling", token="t", cooldown_until=now + 20, proxy="socks5://127.0.0.1:9")
    pool = AccountPool([cooling], proxies=health)
    assert 19 <= pool.next_available_in("m") <= 20
    health.mark_down(cooling.proxy, "refused")
    assert 39 <= pool.next_available_in("m") <= 40
    assert not pool.usable(cooling, now + 30)  # cooled down by then, the proxy still down
    assert pool.usable(cooling, now + 41)
    cooling.enabled = False
    assert pool.next_available_in("m") == 0.0  # disabled accounts never come back by waiting
