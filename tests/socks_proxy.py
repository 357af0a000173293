"""A real SOCKS5 proxy process on loopback (pproxy), with or without a user and password, for the
upstream-proxy and per-account-proxy suites."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.procs import wait_port

PROXY_USER, PROXY_PASSWORD = "alice", "pw-Secret-7788"
# pproxy (PyPI) as a real proxy process. It installs uvloop when it can, then asks for an event
# loop the way uvloop no longer supports; it runs on the standard loop instead.
PPROXY = [
    sys.executable,
    "-c",
    "import sys; sys.modules['uvloop'] = None; sys.argv[0] = 'pproxy'; "
    "from pproxy.server import main; main()",
]


class SocksProxy:
    """pproxy as a SOCKS5 proxy, wanting PROXY_USER and PROXY_PASSWORD unless `password=False`;
    its verbose log names every connection it carries (host:port of the target)."""

    def __init__(self, port: int, log: Path, *, password: bool = True) -> None:
        self.port, self.log = port, log
        self.credentials = f"{PROXY_USER}:{PROXY_PASSWORD}" if password else ""
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        user = f"{self.credentials}@" if self.credentials else ""
        return f"socks5://{user}127.0.0.1:{self.port}"

    def start(self) -> None:
        listen = f"socks5://127.0.0.1:{self.port}" + (f"#{self.credentials}" if self.credentials else "")
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen([*PPROXY, "-l", listen, "-v"], stdout=out, stderr=subprocess.STDOUT)
        wait_port(self.port, self.proc, self.log)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def carried(self, port: int) -> int:
        return self.log.read_text(errors="replace").count(f"127.0.0.1:{port}")
