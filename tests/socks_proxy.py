"""A real SOCKS5 proxy process (pproxy) that wants a user and password, for the per-account proxy
suites."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.procs import wait_port
from tests.test_upstream_proxy import PPROXY

PROXY_USER, PROXY_PASSWORD = "alice", "pw-Secret-7788"


class SocksProxy:
    """pproxy as a SOCKS5 proxy that wants a user and password; its verbose log names every
    connection it carries (host:port of the target)."""

    def __init__(self, port: int, log: Path) -> None:
        self.port, self.log = port, log
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"socks5://{PROXY_USER}:{PROXY_PASSWORD}@127.0.0.1:{self.port}"

    def start(self) -> None:
        listen = f"socks5://127.0.0.1:{self.port}#{PROXY_USER}:{PROXY_PASSWORD}"
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen([*PPROXY, "-l", listen, "-v"], stdout=out, stderr=subprocess.STDOUT)
        wait_port(self.port, self.proc, self.log)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def carried(self, port: int) -> int:
        return self.log.read_text(errors="replace").count(f"127.0.0.1:{port}")
