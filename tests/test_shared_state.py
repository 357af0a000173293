"""Cooldowns, proxy outages and conversation affinity shared across core replicas through Redis: two
real cores on one database and one Debian redis-server; a rate limit one core met is honoured by
the other without asking Cursor, a proxy one core found dead is skipped by the other, and a
conversation keeps its account whichever core serves it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.cluster import redis_server
from tests.procs import Proc, Stack, free_port, start_stack
from tests.socks_proxy import PROXY_PASSWORD, SocksProxy
from tests.store_backends import distinct_token

MODEL = "claude-4.5-sonnet"


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    with redis_server(tmp_path) as url:
        yield url


def ask(url: str, license: str) -> httpx.Response:
    return httpx.post(
        f"{url}/chat/completions",
        json={"model": MODEL, "messages": [{"role": "user", "content": "hello"}]},
        headers={"authorization": f"Bearer {license}"},
        timeout=30,
    )


def second_replica(stack: Stack, tmp_path: Path) -> tuple[Proc, Proc]:
    """Another core on the same database and Redis, and a facade in front of it alone (not started)."""
    core = Proc("core-b", "core", free_port(), {**stack.core.env}, tmp_path / "core-b.log")
    core.env["CURSORGATE_GRPC_PORT"] = str(core.port)
    facade = Proc("facade-b", "facade", free_port(), {**stack.facade.env}, tmp_path / "facade-b.log")
    facade.env["CURSORGATE_HTTP_PORT"] = str(facade.port)
    facade.env["CURSORGATE_CORE_ADDRESS"] = f"127.0.0.1:{core.port}"
    return core, facade


ADMIN_KEY = "adm-shared-state-0123456789"


class TwoCores:
    """Core A (with its facade) and core B (with a facade in front of it alone) on one database and
    one Redis, with an admin key. The store's own sync would carry state over too, but only after
    its interval: that is an hour here, so only Redis can explain what core B knows."""

    def __init__(self, tmp_path: Path, redis_url: str, extra: dict[str, str] | None = None) -> None:
        env = {
            "CURSORGATE_REDIS_URL": redis_url,
            "CURSORGATE_STORE_SYNC_INTERVAL": "3600",
            "CURSORGATE_ADMIN_KEY": ADMIN_KEY,
            **(extra or {}),
        }
        self.a = start_stack(tmp_path, env)
        self.headers = {"authorization": f"Bearer {ADMIN_KEY}"}
        self.core_b, self.facade_b = second_replica(self.a, tmp_path)
        self.root_b = f"http://127.0.0.1:{self.facade_b.port}"
        self.url_b = f"{self.root_b}/cursor/v1"
        try:
            self.core_b.start()
            self.facade_b.start()
        except BaseException:
            self.stop()
            raise

    def accounts(self, root: str) -> list[dict[str, Any]]:
        listed = httpx.get(f"{root}/cursor/admin/api/accounts", headers=self.headers, timeout=30)
        accounts: list[dict[str, Any]] = listed.json()["accounts"]
        return accounts

    def add_account(self, body: dict[str, object]) -> None:
        """Added through core A; core B re-reads the store when A announces it."""
        assert self.a.admin("POST", "/accounts", body).status_code == 201
        count = len(self.accounts(self.a.root_url))
        deadline = time.monotonic() + 10
        while len(self.accounts(self.root_b)) < count:
            assert time.monotonic() < deadline, "core B never saw the account added through core A"
            time.sleep(0.2)

    def served_by(self, root: str) -> str:
        """The account of the last request the core behind this facade logged."""
        answer = httpx.get(f"{root}/cursor/admin/api/requests?limit=1", headers=self.headers, timeout=30)
        (entry,) = answer.json()["requests"]
        assert entry["outcome"] == "ok", entry
        return str(entry["account_id"])

    def stop(self) -> None:
        self.facade_b.stop()
        self.core_b.stop()
        self.a.stop()


def test_a_cooldown_set_by_one_core_is_honoured_by_the_other(tmp_path: Path, redis_url: str) -> None:
    cores = TwoCores(tmp_path, redis_url)
    stack, url_b = cores.a, cores.url_b
    try:
        assert ask(url_b, stack.license).status_code == 200  # core B can reach Cursor

        # Cursor rate-limits the only account; core A meets it and cools the account down.
        stack.sim_control("tokens", {"token": stack.token, "rate_limited_until": 300, "retry_after": 300})
        first = ask(stack.base_url, stack.license)
        assert first.status_code == 429
        upstream_calls = len(stack.chat_requests())

        # Core B refuses at once from the shared cooldown, without calling Cursor.
        deadline = time.monotonic() + 5
        while True:
            second = ask(url_b, stack.license)
            if len(stack.chat_requests()) == upstream_calls or time.monotonic() > deadline:
                break
            upstream_calls = len(stack.chat_requests())  # not yet seen by B: try once more
            time.sleep(0.2)
        assert second.status_code == 429
        assert len(stack.chat_requests()) == upstream_calls
        assert int(second.headers["retry-after"]) > 200  # the remaining cooldown, not a default
        assert "cooled down by another replica" in cores.core_b.log.read_text()
    finally:
        cores.stop()


def test_an_account_disabled_by_one_core_is_left_alone_by_the_other(tmp_path: Path, redis_url: str) -> None:
    cores = TwoCores(tmp_path, redis_url)
    stack, url_b = cores.a, cores.url_b
    try:
        assert ask(url_b, stack.license).status_code == 200

        # Cursor starts rejecting the only account's token; core A disables the account.
        stack.sim_control("tokens", {"token": stack.token, "reject": True})
        assert ask(stack.base_url, stack.license).status_code != 200
        upstream_calls = len(stack.chat_requests())
        time.sleep(0.5)  # published in the background

        # Core B no longer offers it to Cursor: no account left, and no call upstream.
        refused = ask(url_b, stack.license)
        assert refused.status_code == 503
        assert refused.json()["error"]["code"] == "no_account_available"
        assert len(stack.chat_requests()) == upstream_calls
        assert "disabled by another replica" in cores.core_b.log.read_text()
    finally:
        cores.stop()


def test_a_proxy_one_core_found_down_is_skipped_by_the_other(tmp_path: Path, redis_url: str) -> None:
    cores = TwoCores(tmp_path, redis_url, {"CURSORGATE_PROXY_RETRY_AFTER": "120"})
    stack = cores.a
    proxy = SocksProxy(free_port(), tmp_path / "proxy.log")

    def proxied_on(root: str) -> dict[str, Any]:
        return next(a for a in cores.accounts(root) if a["label"] == "proxied")

    try:
        proxy.start()
        token = distinct_token("auth0|user_shared_proxy")
        cores.add_account({"token": token, "label": "proxied", "proxy": proxy.url})

        # The proxy dies. Core A finds out when the account's turn comes (least recently used), and
        # fails the request over to the other account.
        proxy.kill()
        for _ in range(3):
            assert ask(stack.base_url, stack.license).status_code == 200
            if proxied_on(stack.root_url).get("proxy_down_until"):
                break
        found = proxied_on(stack.root_url)
        assert found.get("proxy_down_until"), found

        # Core B, which has served nothing, holds the proxy down until the same time.
        deadline = time.monotonic() + 5
        while not (told := proxied_on(cores.root_b)).get("proxy_down_until"):
            assert time.monotonic() < deadline, f"core B never heard of it: {told['proxy_error']!r}"
            time.sleep(0.1)
        assert told["proxy_down_until"] == found["proxy_down_until"]
        assert told["proxy_error"] == found["proxy_error"]
        log_b = cores.core_b.log.read_text()
        assert "marked down by another replica" in log_b and PROXY_PASSWORD not in log_b
        assert ask(f"{cores.root_b}/cursor/v1", stack.license).status_code == 200
    finally:
        proxy.kill()
        cores.stop()


def test_a_conversation_keeps_its_account_on_the_other_core(tmp_path: Path, redis_url: str) -> None:
    cores = TwoCores(tmp_path, redis_url, {"CURSORGATE_POOL_AFFINITY": "true"})

    def converse(root: str, key: str) -> str:
        answer = httpx.post(
            f"{root}/cursor/v1/chat/completions",
            json={
                "model": MODEL,
                "messages": [{"role": "user", "content": f"a new opening for {key}"}],
                "prompt_cache_key": key,
            },
            headers={"authorization": f"Bearer {cores.a.license}"},
            timeout=30,
        )
        assert answer.status_code == 200, answer.text
        return cores.served_by(root)

    try:
        for i in range(2):
            cores.add_account({"token": distinct_token(f"auth0|user_affine_{i}")})

        # Four conversations through core A spread over the three accounts (least recently used
        # first), so at least two of them share one.
        keys = [f"conversation-{i}" for i in range(4)]
        on_a = {key: converse(cores.a.root_url, key) for key in keys}
        assert len(set(on_a.values())) == 3, on_a
        pair = next([k, other] for k in keys for other in keys if k < other and on_a[k] == on_a[other])
        time.sleep(0.5)  # published in the background

        # Through core B, each keeps its account. The pair comes first, back to back: without what
        # core A announced, core B would never give a new conversation the account it just used.
        for key in pair + [k for k in keys if k not in pair]:
            assert converse(cores.root_b, key) == on_a[key], key
    finally:
        cores.stop()


def test_redis_away_fails_nothing(tmp_path: Path) -> None:
    """Nothing listens on the configured Redis port: core starts (after a bounded wait) and serves."""
    stack = start_stack(tmp_path, {"CURSORGATE_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"})
    try:
        assert ask(stack.base_url, stack.license).status_code == 200
        assert "shared accounts: no subscription" in stack.core.log.read_text()
        # Least-loaded routing went on with this core's own counts.
        assert "shared in-flight: picking failed" in stack.core.log.read_text()
    finally:
        stack.stop()


def test_a_license_cap_holds_across_cores_and_a_dead_cores_slots_come_back(
    tmp_path: Path, redis_url: str
) -> None:
    from tests.test_drain import StreamInBackground

    cores = TwoCores(
        tmp_path, redis_url, {"CURSORGATE_LICENSE_MAX_CONCURRENT": "2", "CURSORGATE_REDIS_SLOT_TTL": "2"}
    )
    stack, url_b = cores.a, cores.url_b
    try:
        # Two long streams on core A take both slots of the license.
        streams = [StreamInBackground(stack, "hold\nsim: chunks=100 delay_ms=200") for _ in range(2)]
        for stream in streams:
            assert stream.first_data.wait(20) and stream.status == 200
        refused = ask(url_b, stack.license)
        assert refused.status_code == 429  # core B counts core A's slots
        assert "at most 2" in refused.json()["error"]["message"]
        assert ask(stack.base_url, stack.license).status_code == 429

        # Core A dies without releasing them: they stay taken until they expire, then come back.
        assert stack.core.popen is not None
        stack.core.popen.kill()
        stack.core.popen.wait(10)
        assert ask(url_b, stack.license).status_code == 429
        deadline = time.monotonic() + 15
        while (status := ask(url_b, stack.license).status_code) == 429 and time.monotonic() < deadline:
            time.sleep(0.3)
        assert status == 200
    finally:
        cores.stop()
