"""Simulator, core and facade as separate processes on 127.0.0.1 ephemeral ports."""

from __future__ import annotations

import contextlib
import os
import resource
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from core.simulator.config import make_jwt

ROOT = Path(__file__).resolve().parent.parent
LICENSE = "sk-bench-license"


def raise_fd_limit() -> int:
    """Soft RLIMIT_NOFILE up to the hard limit; child processes inherit it (set before spawning)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft < target:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def free_port() -> int:
    with contextlib.closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Proc:
    name: str
    module: str
    port: int
    log: Path
    popen: subprocess.Popen[bytes] | None = None

    def start(self, env: dict[str, str], timeout: float = 30) -> None:
        with self.log.open("ab") as out:
            self.popen = subprocess.Popen(
                [sys.executable, "-m", self.module], env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise RuntimeError(f"{self.name} exited:\n{self.log.read_text()[-3000:]}")
            with contextlib.closing(socket.socket()) as sock:
                sock.settimeout(0.2)
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not listen on {self.port}:\n{self.log.read_text()[-3000:]}")

    @property
    def ps(self) -> psutil.Process:
        assert self.popen is not None
        return psutil.Process(self.popen.pid)

    def stop(self) -> None:
        if self.popen is None or self.popen.poll() is not None:
            return
        self.popen.terminate()
        try:
            self.popen.wait(10)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()


@dataclass
class Stack:
    tmp: Path
    token: str = field(default_factory=lambda: make_jwt("auth0|user_bench"))
    sim: Proc = field(init=False)
    core: Proc = field(init=False)
    facade: Proc = field(init=False)

    def __post_init__(self) -> None:
        self.sim = Proc("simulator", "core.simulator", free_port(), self.tmp / "simulator.log")
        self.core = Proc("core", "core", free_port(), self.tmp / "core.log")
        self.facade = Proc("facade", "facade", free_port(), self.tmp / "facade.log")

    @property
    def sim_url(self) -> str:
        return f"http://127.0.0.1:{self.sim.port}"

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.core.port}"

    @property
    def facade_url(self) -> str:
        return f"http://127.0.0.1:{self.facade.port}/cursor/v1"

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "CURSORGATE_ENV_FILE": str(self.tmp / "none.env"),
            "CURSORGATE_SIMULATOR_PORT": str(self.sim.port),
            "CURSORGATE_GRPC_PORT": str(self.core.port),
            "CURSORGATE_HTTP_PORT": str(self.facade.port),
            "CURSORGATE_UPSTREAM_URL": self.sim_url,
            "CURSORGATE_LICENSES": LICENSE,
            "CURSORGATE_DATABASE_URL": f"sqlite+aiosqlite:///{self.tmp / 'bench.db'}",
            # Production default; logs stay off the hot path.
            "CURSORGATE_LOG_LEVEL": "WARNING",
            # Idle streams wait longer than the default watchdog would allow.
            "CURSORGATE_UPSTREAM_IDLE_TIMEOUT": "600",
            "CURSOR_TOKEN": self.token,
        }

    def start(self) -> None:
        env = self.env()
        try:
            for proc in (self.sim, self.core, self.facade):
                proc.start(env)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        for proc in (self.facade, self.core, self.sim):
            proc.stop()

    def processes(self) -> dict[str, psutil.Process]:
        return {
            "simulator": self.sim.ps,
            "core": self.core.ps,
            "facade": self.facade.ps,
            "loadgen": psutil.Process(),
        }
