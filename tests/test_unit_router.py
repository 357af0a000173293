"""The router's decisions (core/pool/router.py), with a scripted upstream and a real account pool.

Failover before the first byte and never after, which failures disable, cool down or leave an
account alone, the renewal retry, the transport-retry backoff, and the error when no account is
left. Expected values are written out (account ids, reasons, codes), not derived from the router.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

import core.pool.router as router_module
from core.chat.catalog import ModelInfo
from core.errors import GatewayError
from core.pool.accounts import Account, AccountPool
from core.pool.router import Router
from core.upstream.errors import Failure, UpstreamError
from cursorgate.v1 import chat_pb2, errors_pb2

MODEL = "gpt-5.2"


def text(t: str) -> chat_pb2.ChatEvent:
    return chat_pb2.ChatEvent(text=chat_pb2.TextDelta(text=t))


class Script:
    """Per account id, what the upstream does: a list of events, or an error raised after
    `after` events. Records each attempt as (account id, token)."""

    def __init__(self, plan: dict[str, list[Any]]) -> None:
        self.plan = plan
        self.calls: list[tuple[str, str]] = []
        self.models: list[str] = []
        self.remaining: list[float | None] = []
        self.closed = 0

    async def stream_chat(
        self, account: Account, request: chat_pb2.ChatRequest, time_remaining: float | None
    ) -> AsyncIterator[chat_pb2.ChatEvent]:
        self.calls.append((account.id, account.token))
        self.models.append(request.model)
        self.remaining.append(time_remaining)
        steps = self.plan[account.id]
        step = steps.pop(0) if len(steps) > 1 else steps[0]
        try:
            for item in step:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self.closed += 1


class Renewer:
    def __init__(self, result: bool) -> None:
        self.result = result
        self.calls: list[tuple[str, str | None]] = []

    async def renew(self, account: Account, *, seen_token: str | None = None) -> bool:
        self.calls.append((account.id, seen_token))
        if self.result:
            account.token = "renewed"
        return self.result


# What each test account offers: the requested model and one other, so a pick that ignored the
# model would see a difference.
OFFERS = {MODEL: ModelInfo(id=MODEL), "other-model": ModelInfo(id="other-model")}


def accounts(*ids: str) -> list[Account]:
    # last_used orders them: "a" before "b" before "c".
    return [Account(id=i, token=f"tok-{i}", last_used=n, models=dict(OFFERS)) for n, i in enumerate(ids)]


def err(failure: Failure, message: str = "boom", retry_after_s: float = 0.0) -> UpstreamError:
    return UpstreamError(failure, message, retry_after_s=retry_after_s)


async def collect(router: Router, timeout: float | None = 30.0) -> list[str]:
    request = chat_pb2.ChatRequest(model=MODEL)
    return [e.text.text async for e in router.stream(request, timeout)]


async def test_first_candidate_serves_and_is_leased_once() -> None:
    pool = AccountPool(accounts("a", "b"))
    upstream = Script({"a": [[text("hi"), text("!")]], "b": [[text("no")]]})
    assert await collect(Router(pool, upstream, attempts=3), 12.5) == ["hi", "!"]
    assert upstream.calls == [("a", "tok-a")]
    assert upstream.models == [MODEL]
    assert upstream.remaining == [12.5]
    a = pool.get("a")
    assert a is not None and a.requests == 1 and a.in_flight == 0 and a.last_used > 1000
    assert upstream.closed == 1


@pytest.mark.parametrize(
    ("failure", "enabled", "cooling", "reason"),
    [
        (Failure.RATE_LIMITED, True, True, "rate_limited: boom"),
        (Failure.USAGE_LIMIT, True, True, "usage_limit: boom"),
        (Failure.AUTH, False, False, "Cursor rejected the token: boom"),
        (Failure.ACCOUNT_BLOCKED, False, False, "boom"),
        (Failure.UNAVAILABLE, True, False, "unavailable: boom"),
        (Failure.REGION_BLOCKED, True, False, "region_blocked: boom"),
        (Failure.MODEL_BLOCKED, True, False, "model_blocked: boom"),
    ],
)
async def test_retryable_failures_fail_over_and_mark_the_account(
    failure: Failure, enabled: bool, cooling: bool, reason: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(router_module, "RETRY_BACKOFF_S", 0.0)
    seen: list[Failure] = []
    pool = AccountPool(accounts("a", "b"))
    upstream = Script({"a": [[err(failure, retry_after_s=30)]], "b": [[text("ok")]]})
    router = Router(pool, upstream, attempts=3, on_failure=seen.append)
    assert await collect(router) == ["ok"]
    assert [c[0] for c in upstream.calls] == ["a", "b"]
    a = pool.get("a")
    assert a is not None
    assert a.enabled is enabled
    assert a.last_error == reason
    assert a.failures == 1
    assert (a.disabled_reason == reason) is (not enabled)
    if cooling:
        assert 25 < a.cooldown_until - time.time() <= 30
    else:
        assert a.cooldown_until == 0.0
    assert seen == [failure]


@pytest.mark.parametrize("failure", [Failure.BAD_REQUEST, Failure.TOO_LARGE])
async def test_caller_faults_raise_and_leave_the_account_alone(failure: Failure) -> None:
    seen: list[Failure] = []
    pool = AccountPool(accounts("a", "b"))
    upstream = Script({"a": [[err(failure)]], "b": [[text("ok")]]})
    with pytest.raises(UpstreamError) as caught:
        await collect(Router(pool, upstream, attempts=3, on_failure=seen.append))
    assert caught.value.failure is failure
    assert [c[0] for c in upstream.calls] == ["a"]
    a = pool.get("a")
    assert a is not None and a.enabled and a.failures == 0 and a.last_error == "" and a.cooldown_until == 0
    assert seen == [failure]


@pytest.mark.parametrize(
    ("failure", "reason"),
    [
        (Failure.OUTDATED_CLIENT, "outdated_client: boom"),
        (Failure.BAD_MODEL, "bad_model: boom"),
        (Failure.TIMEOUT, "timeout: boom"),
        (Failure.PROTOCOL, "protocol: boom"),
    ],
)
async def test_non_retryable_failures_raise_without_failover(failure: Failure, reason: str) -> None:
    pool = AccountPool(accounts("a", "b"))
    upstream = Script({"a": [[err(failure)]], "b": [[text("ok")]]})
    with pytest.raises(UpstreamError) as caught:
        await collect(Router(pool, upstream, attempts=3))
    assert caught.value.failure is failure
    assert [c[0] for c in upstream.calls] == ["a"]
    a = pool.get("a")
    assert a is not None and a.enabled and a.last_error == reason and a.failures == 1


async def test_no_failover_once_something_reached_the_caller() -> None:
    pool = AccountPool(accounts("a", "b"))
    upstream = Script({"a": [[text("par"), err(Failure.RATE_LIMITED)]], "b": [[text("ok")]]})
    got: list[str] = []

    async def consume() -> None:
        async for event in Router(pool, upstream, attempts=3).stream(chat_pb2.ChatRequest(model=MODEL), None):
            got.append(event.text.text)

    with pytest.raises(UpstreamError) as caught:
        await consume()
    assert got == ["par"] and caught.value.failure is Failure.RATE_LIMITED
    assert [c[0] for c in upstream.calls] == ["a"]
    a = pool.get("a")
    assert a is not None and a.cooldown_until > time.time()  # still recorded against the account


async def test_attempts_bound_the_failover_and_the_last_error_is_raised() -> None:
    pool = AccountPool(accounts("a", "b", "c"))
    upstream = Script(
        {
            "a": [[err(Failure.RATE_LIMITED, "first")]],
            "b": [[err(Failure.USAGE_LIMIT, "second")]],
            "c": [[text("never")]],
        }
    )
    with pytest.raises(UpstreamError) as caught:
        await collect(Router(pool, upstream, attempts=2))
    assert caught.value.failure is Failure.USAGE_LIMIT and caught.value.message == "second"
    assert [c[0] for c in upstream.calls] == ["a", "b"]


async def test_zero_attempts_still_tries_once() -> None:
    pool = AccountPool(accounts("a"))
    upstream = Script({"a": [[text("ok")]]})
    assert await collect(Router(pool, upstream, attempts=0)) == ["ok"]
    assert Router(pool, upstream, attempts=-3).attempts == 1
    assert Router(pool, upstream, attempts=4).attempts == 4


async def test_transport_failures_retry_a_tried_account_with_growing_backoff(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sleeps: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        sleeps.append(seconds)

    monkeypatch.setattr(router_module, "backoff", fake_sleep)
    pool = AccountPool(accounts("a"))
    down = err(Failure.UNAVAILABLE)
    upstream = Script({"a": [[down], [down], [text("back")]]})
    assert await collect(Router(pool, upstream, attempts=3)) == ["back"]
    assert [c[0] for c in upstream.calls] == ["a", "a", "a"]
    assert sleeps == [pytest.approx(0.05), pytest.approx(0.10)]


async def test_no_backoff_after_other_failures(monkeypatch: pytest.MonkeyPatch) -> None:
    sleeps: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        sleeps.append(seconds)

    monkeypatch.setattr(router_module, "backoff", fake_sleep)
    pool = AccountPool(accounts("a", "b"))
    upstream = Script({"a": [[err(Failure.REGION_BLOCKED)]], "b": [[text("ok")]]})
    assert await collect(Router(pool, upstream, attempts=3)) == ["ok"]
    assert sleeps == []


async def test_a_tried_account_is_not_reused_after_an_account_failure() -> None:
    pool = AccountPool(accounts("a"))
    upstream = Script({"a": [[err(Failure.REGION_BLOCKED, "nope")], [text("again")]]})
    with pytest.raises(UpstreamError) as caught:
        await collect(Router(pool, upstream, attempts=3))
    assert caught.value.message == "nope"
    assert [c[0] for c in upstream.calls] == ["a"]


async def test_auth_failure_renews_once_and_retries_the_account() -> None:
    renewer = Renewer(result=True)
    pool = AccountPool(accounts("a"))
    upstream = Script({"a": [[err(Failure.AUTH)], [text("fresh")]]})
    seen: list[Failure] = []
    router = Router(pool, upstream, attempts=3, renewer=renewer, on_failure=seen.append)
    assert await collect(router) == ["fresh"]
    assert upstream.calls == [("a", "tok-a"), ("a", "renewed")]
    assert renewer.calls == [("a", "tok-a")]
    a = pool.get("a")
    assert a is not None and a.enabled and a.failures == 0
    assert seen == []  # a renewed token is not a failure of the account


async def test_a_renewed_account_stays_a_candidate_behind_fresher_ones() -> None:
    """After renewal the account is untried again; the pool's order (least recently used) puts
    the other account first, and the renewed one is still there if that fails."""
    renewer = Renewer(result=True)
    pool = AccountPool(accounts("a", "b"))
    upstream = Script({"a": [[err(Failure.AUTH)], [text("fresh")]], "b": [[err(Failure.RATE_LIMITED)]]})
    assert await collect(Router(pool, upstream, attempts=3, renewer=renewer)) == ["fresh"]
    assert upstream.calls == [("a", "tok-a"), ("b", "tok-b"), ("a", "renewed")]


async def test_auth_failure_again_after_renewal_disables_and_fails_over() -> None:
    renewer = Renewer(result=True)
    pool = AccountPool(accounts("a"))
    pool.add(Account(id="b", token="tok-b", last_used=time.time() + 3600))  # used last: tried last
    upstream = Script({"a": [[err(Failure.AUTH, "bad")]], "b": [[text("other")]]})
    router = Router(pool, upstream, attempts=3, renewer=renewer)
    assert await collect(router) == ["other"]
    assert upstream.calls == [("a", "tok-a"), ("a", "renewed"), ("b", "tok-b")]
    assert renewer.calls == [("a", "tok-a")]
    a = pool.get("a")
    assert a is not None and not a.enabled and a.disabled_reason == "Cursor rejected the token: bad"


async def test_failed_renewal_disables_the_account() -> None:
    renewer = Renewer(result=False)
    pool = AccountPool(accounts("a", "b"))
    upstream = Script({"a": [[err(Failure.AUTH)]], "b": [[text("other")]]})
    assert await collect(Router(pool, upstream, attempts=3, renewer=renewer)) == ["other"]
    assert upstream.calls == [("a", "tok-a"), ("b", "tok-b")]
    a = pool.get("a")
    assert a is not None and not a.enabled


async def test_only_auth_failures_renew() -> None:
    renewer = Renewer(result=True)
    pool = AccountPool(accounts("a", "b"))
    upstream = Script({"a": [[err(Failure.ACCOUNT_BLOCKED)]], "b": [[text("other")]]})
    assert await collect(Router(pool, upstream, attempts=3, renewer=renewer)) == ["other"]
    assert renewer.calls == []


async def test_auth_failure_after_the_first_byte_is_not_renewed() -> None:
    renewer = Renewer(result=True)
    pool = AccountPool(accounts("a"))
    upstream = Script({"a": [[text("x"), err(Failure.AUTH)]]})
    with pytest.raises(UpstreamError):
        await collect(Router(pool, upstream, attempts=3, renewer=renewer))
    assert renewer.calls == []


async def test_no_account_for_the_model() -> None:
    pool = AccountPool([Account(id="a", token="t", models={"other-model": None})])  # type: ignore[dict-item]
    upstream = Script({})
    with pytest.raises(GatewayError) as caught:
        await collect(Router(pool, upstream, attempts=3))
    assert errors_pb2.ErrorCode.Name(caught.value.code) == "ERROR_CODE_NO_ACCOUNT_AVAILABLE"
    assert caught.value.message == "No enabled Cursor account offers the model 'gpt-5.2'."
    assert caught.value.retry_after_ms == 0
    assert upstream.calls == []


async def test_every_account_cooling_down_is_a_rate_limit_with_the_wait() -> None:
    account = Account(id="a", token="t", cooldown_until=time.time() + 20, models=dict(OFFERS))
    pool = AccountPool([account])
    with pytest.raises(GatewayError) as caught:
        await collect(Router(pool, Script({}), attempts=3))
    assert errors_pb2.ErrorCode.Name(caught.value.code) == "ERROR_CODE_RATE_LIMITED"
    assert caught.value.message == (
        "Every Cursor account that offers this model is cooling down (or behind a proxy that is down); "
        "retry later."
    )
    assert 18_000 < caught.value.retry_after_ms <= 20_000


async def test_failover_logs_the_account_and_failure(caplog: pytest.LogCaptureFixture) -> None:
    pool = AccountPool(accounts("a", "b"))
    upstream = Script({"a": [[err(Failure.RATE_LIMITED)]], "b": [[text("ok")]]})
    with caplog.at_level("WARNING", logger="cursorgate.router"):
        await collect(Router(pool, upstream, attempts=3))
    assert [r.getMessage() for r in caplog.records if r.name == "cursorgate.router"] == [
        "account a failed before first byte (rate_limited); failing over"
    ]


async def test_each_attempt_is_traced_with_account_model_and_number(monkeypatch: pytest.MonkeyPatch) -> None:
    spans: list[dict[str, Any]] = []

    class Span:
        def __init__(self, attributes: dict[str, Any]) -> None:
            spans.append(attributes)

        def __enter__(self) -> Span:
            return self

        def __exit__(self, *exc: object) -> None:
            return None

    monkeypatch.setattr(router_module, "UpstreamSpan", Span)
    pool = AccountPool(accounts("a", "b"))
    upstream = Script({"a": [[err(Failure.RATE_LIMITED)]], "b": [[text("ok")]]})
    await collect(Router(pool, upstream, attempts=3))
    assert spans == [
        {"cursorgate.account_id": "a", "cursorgate.model": MODEL, "cursorgate.attempt": 1},
        {"cursorgate.account_id": "b", "cursorgate.model": MODEL, "cursorgate.attempt": 2},
    ]


async def test_a_cooldown_under_a_second_is_still_a_rate_limit() -> None:
    account = Account(id="a", token="t", cooldown_until=time.time() + 0.5, models=dict(OFFERS))
    with pytest.raises(GatewayError) as caught:
        await collect(Router(AccountPool([account]), Script({}), attempts=3))
    assert errors_pb2.ErrorCode.Name(caught.value.code) == "ERROR_CODE_RATE_LIMITED"
    assert 0 < caught.value.retry_after_ms <= 500


async def test_accounts_not_offering_the_model_are_not_picked() -> None:
    only_other = Account(id="x", token="tok-x", models={"other-model": ModelInfo(id="other-model")})
    pool = AccountPool([only_other, *accounts("a")])
    upstream = Script({"a": [[text("ok")]], "x": [[text("wrong")]]})
    assert await collect(Router(pool, upstream, attempts=3)) == ["ok"]
    assert [c[0] for c in upstream.calls] == ["a"]


async def test_renewal_on_the_last_attempt_raises_the_auth_error() -> None:
    pool = AccountPool(accounts("a"))
    upstream = Script({"a": [[err(Failure.AUTH, "expired")], [text("never")]]})
    with pytest.raises(UpstreamError) as caught:
        await collect(Router(pool, upstream, attempts=1, renewer=Renewer(result=True)))
    assert caught.value.failure is Failure.AUTH and caught.value.message == "expired"


# --- proxies, plan limits, affinity, per-account caps (merged behaviours) -------------------------


def plan(percent: float) -> dict[str, object]:
    return {"usage": {"planUsage": {"totalPercentUsed": percent}}}


async def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_a_dead_proxy_fails_over_without_penalising_its_account() -> None:
    dead = f"socks5://127.0.0.1:{await closed_port()}"
    a, b = accounts("a", "b")
    a.proxy = dead
    pool = AccountPool([a, b])
    seen: list[Failure] = []
    upstream = Script({"a": [[err(Failure.UNAVAILABLE)]], "b": [[text("via b")]]})
    assert await collect(Router(pool, upstream, attempts=3, on_failure=seen.append)) == ["via b"]
    assert [c[0] for c in upstream.calls] == ["a", "b"]
    # The account is as it was; the proxy is down for its retry time (30 s by default).
    assert a.enabled and a.failures == 0 and a.cooldown_until == 0.0 and a.last_error == ""
    down = pool.proxies.down(dead)
    assert down is not None and 25 < down.until - time.time() <= 30
    assert seen == [Failure.UNAVAILABLE]
    # Until then the account is not a candidate at all.
    assert [x.id for x in pool.candidates(MODEL)] == ["b"]


async def test_a_reachable_proxy_leaves_the_failure_to_the_account() -> None:
    import asyncio

    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        a, b = accounts("a", "b")
        a.proxy = f"http://127.0.0.1:{port}"
        pool = AccountPool([a, b])
        upstream = Script({"a": [[err(Failure.UNAVAILABLE)]], "b": [[text("ok")]]})
        assert await collect(Router(pool, upstream, attempts=3)) == ["ok"]
        assert pool.proxies.down(a.proxy) is None
        assert a.failures == 1 and a.last_error == "unavailable: boom"
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize("failure", [Failure.RATE_LIMITED, Failure.AUTH])
async def test_only_transport_failures_can_be_the_proxys(failure: Failure) -> None:
    dead = f"socks5://127.0.0.1:{await closed_port()}"
    a, b = accounts("a", "b")
    a.proxy = dead
    pool = AccountPool([a, b])
    upstream = Script({"a": [[err(failure)]], "b": [[text("ok")]]})
    assert await collect(Router(pool, upstream, attempts=3)) == ["ok"]
    assert pool.proxies.down(dead) is None and a.failures == 1


async def test_the_only_account_behind_a_dead_proxy_is_a_wait_not_a_failure() -> None:
    dead = f"socks5://127.0.0.1:{await closed_port()}"
    (a,) = accounts("a")
    a.proxy = dead
    pool = AccountPool([a])
    with pytest.raises(GatewayError) as caught:
        await collect(Router(pool, Script({"a": [[err(Failure.TIMEOUT)]]}), attempts=3))
    assert errors_pb2.ErrorCode.Name(caught.value.code) == "ERROR_CODE_RATE_LIMITED"
    assert 25_000 < caught.value.retry_after_ms <= 30_000
    assert a.enabled and a.failures == 0


async def test_an_account_near_its_plan_limit_serves_only_when_no_other_can() -> None:
    a, b = accounts("a", "b")
    a.details = plan(95.0)
    pool = AccountPool([a, b], near_limit_percent=90)
    upstream = Script({"a": [[text("from a")]], "b": [[text("from b")]]})
    assert await collect(Router(pool, upstream, attempts=3)) == ["from b"]
    b.enabled = False
    assert await collect(Router(pool, upstream, attempts=3)) == ["from a"]
    assert [c[0] for c in upstream.calls] == ["b", "a"]


async def test_a_conversation_sticks_to_its_account_even_when_another_is_idler() -> None:
    a, b = accounts("a", "b")
    pool = AccountPool([a, b], affinity=True)
    upstream = Script({"a": [[text("a")]], "b": [[text("b")]]})
    router = Router(pool, upstream, attempts=3)
    first = chat_pb2.ChatRequest(model=MODEL, affinity_key="conv-1")
    first.messages.add(role=chat_pb2.ROLE_USER).content.add(text="hi")
    assert [e.text.text async for e in router.stream(first, 30.0)] == ["a"]
    # "a" is now the last used, so without affinity "b" would serve next.
    assert [e.text.text async for e in router.stream(first, 30.0)] == ["a"]
    other = chat_pb2.ChatRequest(model=MODEL, affinity_key="conv-2")
    other.messages.add(role=chat_pb2.ROLE_USER).content.add(text="hi")
    assert [e.text.text async for e in router.stream(other, 30.0)] == ["b"]
    assert pool.affine_account("key:conv-1") == "a" and pool.affine_account("key:conv-2") == "b"
    assert AccountPool([a], affinity=False).affine_account("key:conv-1") == ""


async def test_a_full_account_is_skipped_and_all_full_is_overloaded() -> None:
    a, b = accounts("a", "b")
    a.in_flight = 2
    pool = AccountPool([a, b])
    upstream = Script({"a": [[text("a")]], "b": [[text("b")]]})
    assert await collect(Router(pool, upstream, attempts=3, max_per_account=2)) == ["b"]
    b.in_flight = 2
    with pytest.raises(GatewayError) as caught:
        await collect(Router(pool, upstream, attempts=3, max_per_account=2))
    assert errors_pb2.ErrorCode.Name(caught.value.code) == "ERROR_CODE_OVERLOADED"
    assert caught.value.message == "The gateway is at capacity (2 streams per account); retry shortly."
    assert caught.value.retry_after_ms == 1000
    # No cap (0): in-flight counts never exclude an account.
    assert await collect(Router(pool, upstream, attempts=3)) == ["a"]
