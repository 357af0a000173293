"""Simulator, core and facade as separate processes on 127.0.0.1 ephemeral ports, started with the
tests' harness (tests/procs.py) and configured for benchmarking."""

from __future__ import annotations

import contextlib
import resource
from pathlib import Path

import psutil

from tests.procs import Proc, Stack, start_stack

LICENSE = "sk-bench-license"

BENCH_ENV = {
    # Production default; logs stay off the hot path.
    "CURSORGATE_LOG_LEVEL": "WARNING",
    # Idle streams wait longer than the default watchdog would allow.
    "CURSORGATE_UPSTREAM_IDLE_TIMEOUT": "600",
}


def raise_fd_limit() -> int:
    """Soft RLIMIT_NOFILE up to the hard limit; child processes inherit it (set before spawning)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft < target:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def start(tmp: Path) -> Stack:
    return start_stack(tmp, BENCH_ENV, license=LICENSE)


def processes(stack: Stack) -> dict[str, psutil.Process]:
    """The processes to measure; a one-process gateway is counted once, as `core`."""
    procs = {"simulator": _ps(stack.sim), "core": _ps(stack.core)}
    if not stack.one_process:
        procs["facade"] = _ps(stack.facade)
    procs["loadgen"] = psutil.Process()
    return procs


def _ps(proc: Proc) -> psutil.Process:
    assert proc.popen is not None, f"{proc.name} is not running"
    return psutil.Process(proc.popen.pid)
