"""Simulator, core and facade as separate processes on 127.0.0.1 ephemeral ports (started with the
tests' process harness, tests/procs.py)."""

from __future__ import annotations

import contextlib
import os
import resource
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from core.simulator.config import make_jwt
from tests.procs import Proc, free_port

LICENSE = "sk-bench-license"


def raise_fd_limit() -> int:
    """Soft RLIMIT_NOFILE up to the hard limit; child processes inherit it (set before spawning)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft < target:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


@dataclass
class Stack:
    tmp: Path
    token: str = field(default_factory=lambda: make_jwt("auth0|user_bench"))
    sim: Proc = field(init=False)
    core: Proc = field(init=False)
    facade: Proc = field(init=False)

    def __post_init__(self) -> None:
        sim_port, core_port, facade_port = free_port(), free_port(), free_port()
        env = self._env(sim_port, core_port, facade_port)
        self.sim = Proc("simulator", "core.simulator", sim_port, env, self.tmp / "simulator.log")
        self.core = Proc("core", "core", core_port, env, self.tmp / "core.log")
        self.facade = Proc("facade", "facade", facade_port, env, self.tmp / "facade.log")

    @property
    def sim_url(self) -> str:
        return f"http://127.0.0.1:{self.sim.port}"

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.core.port}"

    @property
    def facade_url(self) -> str:
        return f"http://127.0.0.1:{self.facade.port}/cursor/v1"

    def _env(self, sim_port: int, core_port: int, facade_port: int) -> dict[str, str]:
        return {
            **os.environ,
            "CURSORGATE_ENV_FILE": str(self.tmp / "none.env"),
            "CURSORGATE_SIMULATOR_PORT": str(sim_port),
            "CURSORGATE_GRPC_PORT": str(core_port),
            "CURSORGATE_HTTP_PORT": str(facade_port),
            "CURSORGATE_UPSTREAM_URL": f"http://127.0.0.1:{sim_port}",
            "CURSORGATE_LICENSES": LICENSE,
            "CURSORGATE_DATABASE_URL": f"sqlite+aiosqlite:///{self.tmp / 'bench.db'}",
            # Production default; logs stay off the hot path.
            "CURSORGATE_LOG_LEVEL": "WARNING",
            # Idle streams wait longer than the default watchdog would allow.
            "CURSORGATE_UPSTREAM_IDLE_TIMEOUT": "600",
            "CURSOR_TOKEN": self.token,
        }

    def start(self) -> None:
        try:
            for proc in (self.sim, self.core, self.facade):
                proc.start()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        for proc in (self.facade, self.core, self.sim):
            proc.stop()

    def processes(self) -> dict[str, psutil.Process]:
        return {
            "simulator": _ps(self.sim),
            "core": _ps(self.core),
            "facade": _ps(self.facade),
            "loadgen": psutil.Process(),
        }


def _ps(proc: Proc) -> psutil.Process:
    assert proc.popen is not None, f"{proc.name} is not running"
    return psutil.Process(proc.popen.pid)
