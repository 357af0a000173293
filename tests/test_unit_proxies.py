"""Proxy URLs as an operator types them: what is accepted, how they are shown, and what the pool
makes of a proxy that is down and of plan usage (expectations written out by hand)."""

from __future__ import annotations

import time

import pytest

from core.pool.accounts import Account, AccountPool
from core.pool.proxies import InvalidProxy, ProxyDown, ProxyHealth, mask_proxy, parse_proxy, proxy_id
from core.pool.router import affinity_key
from cursorgate.v1 import chat_pb2


@pytest.mark.parametrize(
    "url",
    [
        "http://proxy.example:3128",
        "https://user:pw@proxy.example",
        "socks5://127.0.0.1:1080",
        "socks5h://u:p@[::1]:1080/",
    ],
)
def test_good_proxy_urls_are_kept_as_given(url: str) -> None:
    assert parse_proxy(f"  {url} ") == url


@pytest.mark.parametrize(
    "url",
    [
        "ftp://proxy.example",
        "socks4://proxy.example:1080",
        "socks5://:1080",
        "http://proxy.example:70000",
        "http://proxy.example:port",
        "http://proxy.example/path",
        "http://proxy.example?x=1",
        "proxy.example:3128",
        "http://proxy example",
    ],
)
def test_bad_proxy_urls_are_refused_without_echo(url: str) -> None:
    with pytest.raises(InvalidProxy) as info:
        parse_proxy(url)
    assert "proxy.example" not in str(info.value)


def test_empty_means_none() -> None:
    assert parse_proxy("   ") == ""


def test_masking() -> None:
    assert mask_proxy("socks5://user:secret@host:1080") == "socks5://user:***@host:1080"
    assert mask_proxy("http://token-only@host:3128") == "http://token-only:***@host:3128"
    assert mask_proxy("http://host:3128") == "http://host:3128"
    assert mask_proxy("") == ""


def test_accounts_behind_a_down_proxy_are_skipped_until_the_retry_time() -> None:
    health = ProxyHealth(retry_after_s=60)
    behind = Account(id="behind", token="t1", proxy="socks5://127.0.0.1:9")
    direct = Account(id="direct", token="t2", last_used=time.time())  # used last: normally second
    pool = AccountPool([behind, direct], proxies=health)
    assert [a.id for a in pool.candidates("m")] == ["behind", "direct"]
    health.mark_down(behind.proxy, "refused")
    assert [a.id for a in pool.candidates("m")] == ["direct"]
    direct.enabled = False
    assert 59 <= pool.next_available_in("m") <= 60


def test_an_outage_found_here_is_told_and_one_found_elsewhere_is_kept_if_later() -> None:
    health = ProxyHealth(retry_after_s=60)
    told: list[tuple[str, float, str]] = []
    health.on_down = lambda url, until, reason: told.append((url, until, reason))
    before = time.time()
    until = health.mark_down("socks5://p:1080", "refused")
    assert before + 60 <= until <= time.time() + 60
    assert told == [("socks5://p:1080", until, "refused")]

    # A peer's outage ending earlier than the one held here changes nothing; a later one wins.
    assert health.mark_down_from_peer("socks5://p:1080", until - 10, "peer: earlier") is False
    assert health.mark_down_from_peer("socks5://p:1080", until, "peer: same") is False
    assert health.last("socks5://p:1080") == ProxyDown(until, "refused")
    assert health.mark_down_from_peer("socks5://p:1080", until + 10, "peer: later") is True
    assert health.last("socks5://p:1080") == ProxyDown(until + 10, "peer: later")
    # A proxy not known down here takes the peer's outage as it is; nothing is told back.
    assert health.mark_down_from_peer("http://q:3128", before + 5, "peer") is True
    assert health.down("http://q:3128", before) == ProxyDown(before + 5, "peer")
    assert health.down("http://q:3128", before + 5) is None
    assert len(told) == 1


def test_a_proxy_is_named_between_replicas_without_its_credentials() -> None:
    url = "socks5://alice:pw-Secret@127.0.0.1:1080"
    name = proxy_id(url)
    # SHA-256 of the URL, its first 32 hex digits (sha256sum gives the same).
    assert name == "583a2b32a2f8b0fdf7814bcc70e88a98"
    assert name != proxy_id("socks5://alice:other@127.0.0.1:1080")
    assert "alice" not in name and "Secret" not in name and "1080" not in name


def usage(spend: object, limit: object = 2000, percent: object = None) -> dict[str, object]:
    plan: dict[str, object] = {"totalSpend": spend, "limit": limit}
    if percent is not None:
        plan["totalPercentUsed"] = percent
    return {"usage": {"planUsage": plan}}


def test_remaining_credit_and_near_limit_from_usage() -> None:
    spent = Account(id="spent", token="t", details=usage(1900))
    fresh = Account(id="fresh", token="t", details=usage("500", "2000"))  # int64 as JSON strings
    unknown = Account(id="unknown", token="t")
    assert spent.remaining_credit() == 100 and spent.plan_used_percent() == 95
    assert fresh.remaining_credit() == 1500 and fresh.plan_used_percent() == 25
    assert unknown.remaining_credit() is None and unknown.plan_used_percent() is None
    assert Account(id="p", token="t", details=usage(10, percent=91.5)).plan_used_percent() == 91.5
    pool = AccountPool([spent, fresh, unknown], near_limit_percent=90)
    assert pool.near_limit(spent) and not pool.near_limit(fresh) and not pool.near_limit(unknown)
    assert [a.id for a in pool.candidates("m")][-1] == "spent"
    assert not AccountPool([spent]).near_limit(spent)  # 0: off


def message(role: chat_pb2.Role, text: str) -> chat_pb2.Message:
    return chat_pb2.Message(role=role, content=[chat_pb2.ContentPart(text=text)])


def test_affinity_key_of_a_conversation() -> None:
    system, user = chat_pb2.ROLE_SYSTEM, chat_pb2.ROLE_USER
    first = chat_pb2.ChatRequest(messages=[message(system, "be brief"), message(user, "hi")])
    later = chat_pb2.ChatRequest(
        messages=[
            message(system, "be brief"),
            message(user, "hi"),
            message(chat_pb2.ROLE_ASSISTANT, "hello"),
            message(user, "more"),
        ]
    )
    other = chat_pb2.ChatRequest(messages=[message(system, "be brief"), message(user, "bye")])
    assert affinity_key(first) == affinity_key(later) != affinity_key(other)
    keyed = chat_pb2.ChatRequest(affinity_key="conv-1", messages=[message(user, "anything")])
    assert affinity_key(keyed) == "key:conv-1"


def test_affinity_prefers_the_remembered_account_while_usable() -> None:
    a, b = Account(id="a", token="t1"), Account(id="b", token="t2", last_used=time.time())
    pool = AccountPool([a, b], affinity=True)
    pool.remember("conv", b)
    assert [x.id for x in pool.candidates("m", "conv")] == ["b", "a"]
    assert [x.id for x in pool.candidates("m", "other")] == ["a", "b"]
    b.enabled = False
    assert [x.id for x in pool.candidates("m", "conv")] == ["a"]
