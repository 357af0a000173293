"""CURSORGATE_UPSTREAM_PROXY: every call to Cursor goes through it (a real SOCKS5 proxy process on
loopback), and a dead proxy is a retryable 503 that never counts against the account."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.procs import Stack, free_port, start_stack, wait_port

ADMIN_KEY = "adm-proxy-tests-0123456789"
HELLO: Any = [{"role": "user", "content": "through the proxy"}]
# pproxy (PyPI) as a real proxy process. It installs uvloop when it can, then asks for an event
# loop the way uvloop no longer supports; it runs on the standard loop instead.
PPROXY = [
    sys.executable,
    "-c",
    "import sys; sys.modules['uvloop'] = None; sys.argv[0] = 'pproxy'; "
    "from pproxy.server import main; main()",
]


class ProxyProcess:
    def __init__(self, port: int, log: Path) -> None:
        self.port, self.log = port, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            listen = f"socks5://127.0.0.1:{self.port}"
            self.proc = subprocess.Popen([*PPROXY, "-l", listen, "-v"], stdout=out, stderr=subprocess.STDOUT)
        wait_port(self.port, self.proc, self.log)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def connections_to(self, port: int) -> int:
        return self.log.read_text(errors="replace").count(f"127.0.0.1:{port}")


@pytest.fixture
def proxied(tmp_path: Path) -> Iterator[tuple[Stack, ProxyProcess]]:
    proxy = ProxyProcess(free_port(), tmp_path / "proxy.log")
    proxy.start()
    url = f"socks5://127.0.0.1:{proxy.port}"
    gateway = start_stack(
        tmp_path / "gw", {"CURSORGATE_UPSTREAM_PROXY": url, "CURSORGATE_ADMIN_KEY": ADMIN_KEY}
    )
    yield gateway, proxy
    gateway.stop()
    proxy.stop()


def chat(stack: Stack) -> str:
    client = openai.OpenAI(base_url=stack.base_url, api_key=stack.license, max_retries=0)
    return client.chat.completions.create(model="gpt-5.2", messages=HELLO).choices[0].message.content or ""


def test_chats_go_through_the_proxy_and_survive_its_death(proxied: tuple[Stack, ProxyProcess]) -> None:
    gateway, proxy = proxied
    assert "through the proxy" in chat(gateway)
    assert proxy.connections_to(gateway.sim.port) >= 1  # the proxy carried the call to "Cursor"

    proxy.stop()
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
