"""`cursorgate run`'s supervisor: starts the gateway's processes in order, restarts one that dies
(exponential backoff), gives up on a crash loop, and stops them all in reverse order on
SIGTERM/SIGINT. What each child is and how to probe it is the caller's (core/cli.py)."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import signal
import sys
import tempfile
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc

from core.config import SupervisorSettings

Probe = Callable[[], Awaitable[bool]]
PROBE_INTERVAL_S = 0.1
PROBE_TIMEOUT_S = 1.0
STOP_GRACE_S = 10.0
STATUS_ENV = "CURSORGATE_SUPERVISOR_STATUS_FILE"
PR_SET_PDEATHSIG = 1  # linux/prctl.h


def say(message: str) -> None:
    print(f"cursorgate: {message}", file=sys.stderr, flush=True)


def describe_exit(code: int) -> str:
    """`exit code 1`, or `killed by SIGKILL (-9)` for a signal (asyncio reports it negated)."""
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name} ({code})"
    return f"exit code {code}"


async def http_probe(url: str) -> bool:
    """Ready when the URL answers with anything but a server error (a bare open port is not enough:
    it may belong to someone else)."""
    try:
        async with httpx.AsyncClient(timeout=PROBE_TIMEOUT_S, trust_env=False) as client:
            return (await client.get(url)).status_code < 500
    except httpx.HTTPError:
        return False


async def grpc_probe(address: str) -> bool:
    """Ready when the standard gRPC health service answers SERVING."""
    async with grpc.aio.insecure_channel(address, options=[("grpc.enable_http_proxy", 0)]) as channel:
        try:
            answer = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=PROBE_TIMEOUT_S
            )
        except grpc.aio.AioRpcError:
            return False
    return bool(answer.status == health_pb2.HealthCheckResponse.SERVING)


def die_with_parent() -> Callable[[], None] | None:
    """Linux: a child gets SIGTERM when the supervisor dies, even by kill -9, so no orphan keeps
    the ports a restarted `cursorgate run` needs. Runs in the child between fork and exec: only
    a foreign call, resolved here in the parent beforehand."""
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()

    def arm() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the supervisor died before the line above
            os.kill(os.getpid(), signal.SIGTERM)

    return arm


@dataclass
class ChildSpec:
    name: str
    module: str  # run as `python -m <module>`
    probe: Probe


@dataclass
class Child:
    spec: ChildSpec
    proc: asyncio.subprocess.Process | None = None
    # starting -> running -> (died) backoff -> starting ...; stopped at the end.
    state: str = "starting"
    restarts: int = 0
    last_exit: int | None = None
    last_exit_at: float | None = None
    crashes: deque[float] = field(default_factory=deque)  # monotonic times within the window
    ready: asyncio.Event = field(default_factory=asyncio.Event)

    def status(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "pid": self.proc.pid if self.proc is not None and self.proc.returncode is None else None,
            "restarts": self.restarts,
            "last_exit": self.last_exit,
            "last_exit_at": self.last_exit_at,
        }


class Supervisor:
    def __init__(self, env: dict[str, str], policy: SupervisorSettings) -> None:
        self.policy = policy
        self.children: list[Child] = []
        self._stop = asyncio.Event()
        self._failure: str | None = None
        self._failed = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._tmpdir: tempfile.TemporaryDirectory[str] | None = None
        if policy.supervisor_status_file:
            self.status_path = Path(policy.supervisor_status_file)
        else:
            self._tmpdir = tempfile.TemporaryDirectory(prefix="cursorgate-run-")
            self.status_path = Path(self._tmpdir.name) / "status.json"
        self.env = env | {STATUS_ENV: str(self.status_path)}
        self._preexec = die_with_parent()

    async def run(self, specs: list[ChildSpec], on_ready: Callable[[], None]) -> int:
        """Starts the children one after the other (each ready before the next), then watches
        them until a stop signal (0) or a crash loop (1)."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._stop.set)
        try:
            for spec in specs:
                child = Child(spec)
                self.children.append(child)
                self._tasks.append(asyncio.create_task(self._keep(child), name=f"keep-{spec.name}"))
                if not await self._first_of(child.ready.wait()):
                    break
            else:
                on_ready()
                await self._first_of(self._stop.wait())
        finally:
            await self._shutdown()
        return 0 if self._failure is None else 1

    async def _first_of(self, waiting: Awaitable[object]) -> bool:
        """Waits for `waiting`; False when a stop signal or a crash loop came first."""
        main = asyncio.ensure_future(waiting)
        ends = [asyncio.ensure_future(self._stop.wait()), asyncio.ensure_future(self._failed.wait())]
        await asyncio.wait([main, *ends], return_when=asyncio.FIRST_COMPLETED)
        for fut in (main, *ends):
            fut.cancel()
        return not (self._stop.is_set() or self._failed.is_set())

    # --- one child's life ---

    async def _keep(self, child: Child) -> None:
        while True:
            child.state = "starting"
            child.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                child.spec.module,
                env=self.env,
                # Its own process group: a terminal's Ctrl-C reaches only us, and we stop the
                # children in order instead of all of them at once.
                process_group=0,
                preexec_fn=self._preexec,  # one prctl call, see die_with_parent
            )
            self._write_status()
            died_at = child.last_exit_at
            if await self._until_ready(child):
                child.state = "running"
                child.ready.set()
                self._write_status()
                if died_at is not None:
                    after = time.time() - died_at
                    say(f"{child.spec.name} is back (pid {child.proc.pid}, {after:.1f} s after it died)")
                code = await child.proc.wait()
                reason = describe_exit(code)
            else:
                code = child.proc.returncode if child.proc.returncode is not None else -signal.SIGKILL
                reason = describe_exit(code)
                if child.proc.returncode is None:  # alive but never ready: counts as a crash
                    reason = f"not ready within {self.policy.start_timeout:g} s"
                    child.proc.kill()
                    await child.proc.wait()
            delay = self._crashed(child, code)
            if delay is None:
                self._failure = (
                    f"{child.spec.name} crashed {len(child.crashes)} times within "
                    f"{self.policy.crash_loop_window:g} s (last: {reason}); giving up, stopping everything"
                )
                say(self._failure)
                self._failed.set()
                return
            say(f"{child.spec.name} died ({reason}); restart {child.restarts + 1} in {delay:.1f} s")
            child.state = "backoff"
            self._write_status()
            await asyncio.sleep(delay)
            child.restarts += 1

    async def _until_ready(self, child: Child) -> bool:
        """Probes until the child answers; False if it exits or stays silent past the timeout."""
        assert child.proc is not None
        deadline = time.monotonic() + self.policy.start_timeout
        while child.proc.returncode is None and time.monotonic() < deadline:
            if await child.spec.probe():
                return child.proc.returncode is None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(child.proc.wait()), PROBE_INTERVAL_S)
        return False

    def _crashed(self, child: Child, code: int) -> float | None:
        """Records a death; the delay before the restart, or None for a crash loop."""
        child.last_exit, child.last_exit_at = code, time.time()
        now = time.monotonic()
        child.crashes.append(now)
        while child.crashes and child.crashes[0] <= now - self.policy.crash_loop_window:
            child.crashes.popleft()
        if len(child.crashes) >= self.policy.crash_loop_crashes:
            return None
        backoff: float = self.policy.restart_backoff * 2.0 ** (len(child.crashes) - 1)
        return min(self.policy.restart_backoff_max, backoff)

    # --- the end ---

    async def _shutdown(self) -> None:
        """Keepers first (so nothing restarts), then the children, last started first."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for child in reversed(self.children):
            proc = child.proc
            if proc is not None and proc.returncode is None:
                proc.terminate()
                try:
                    await asyncio.wait_for(proc.wait(), STOP_GRACE_S)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()
            child.state = "stopped"
        self._write_status()
        if self._tmpdir is not None:
            self._tmpdir.cleanup()

    def _write_status(self) -> None:
        """Atomically (write, then rename), so a reader never sees half a file."""
        status = {
            "supervisor_pid": os.getpid(),
            "updated_at": time.time(),
            "children": {c.spec.name: c.status() for c in self.children},
        }
        tmp = self.status_path.with_name(self.status_path.name + ".tmp")
        try:
            tmp.write_text(json.dumps(status))
            tmp.replace(self.status_path)
        except OSError as err:  # a status file is a convenience; supervision goes on without it
            say(f"cannot write {self.status_path} ({err.strerror})")
