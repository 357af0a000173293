"""CURSORGATE_UPSTREAM_PROXY: every call to Cursor goes through it (a real SOCKS5 proxy process on
loopback), and a dead proxy is a retryable 503 that never counts against the account."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.procs import Stack, free_port, start_stack
from tests.socks_proxy import SocksProxy

ADMIN_KEY = "adm-proxy-tests-0123456789"
HELLO: Any = [{"role": "user", "content": "through the proxy"}]


@pytest.fixture
def proxied(tmp_path: Path) -> Iterator[tuple[Stack, SocksProxy]]:
    proxy = SocksProxy(free_port(), tmp_path / "proxy.log", password=False)
    proxy.start()
    gateway = start_stack(
        tmp_path / "gw", {"CURSORGATE_UPSTREAM_PROXY": proxy.url, "CURSORGATE_ADMIN_KEY": ADMIN_KEY}
    )
    yield gateway, proxy
    gateway.stop()
    proxy.kill()


def chat(stack: Stack) -> str:
    client = openai.OpenAI(base_url=stack.base_url, api_key=stack.license, max_retries=0)
    return client.chat.completions.create(model="gpt-5.2", messages=HELLO).choices[0].message.content or ""


def test_chats_go_through_the_proxy_and_survive_its_death(proxied: tuple[Stack, SocksProxy]) -> None:
    gateway, proxy = proxied
    assert "through the proxy" in chat(gateway)
    assert proxy.carried(gateway.sim.port) >= 1  # the proxy carried the call to "Cursor"

    proxy.kill()
    client = openai.OpenAI(base_url=gateway.base_url, api_key=gateway.license, max_retries=0)
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(model="gpt-5.2", messages=HELLO)
    assert info.value.status_code == 503
    (account,) = gateway.admin("GET", "/accounts").json()["accounts"]
    assert account["enabled"] and account["status"] == "active"  # the proxy's fault, not the account's

    proxy.start()
    deadline = time.monotonic() + 20
    while True:
        try:
            assert "through the proxy" in chat(gateway)
            break
        except openai.APIStatusError:
            assert time.monotonic() < deadline
            time.sleep(0.5)


def test_a_malformed_proxy_setting_stops_core_with_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match=r"CURSORGATE_UPSTREAM_PROXY: .*socks5"):
        start_stack(tmp_path, {"CURSORGATE_UPSTREAM_PROXY": "ftp://user:pw@proxy.example"})
    assert "user:pw" not in "".join(p.read_text() for p in tmp_path.glob("*.log"))
