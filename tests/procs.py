"""Starting the real processes (simulator, core, facade) on loopback for tests."""

from __future__ import annotations

import contextlib
import os
import random
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil

from core.upstream.base import PROBE_MODEL
from simulator.config import make_jwt

ROOT = Path(__file__).resolve().parent.parent


# Ports for the processes the tests start are picked below the kernel's ephemeral range (32768 and
# up on Linux, where outgoing connections take theirs), in a block of their own per pytest-xdist
# worker, and never twice in one run: with bind(0), a port handed to one worker could be handed to
# the other before the first one's process had bound it (CI once saw a facade talk to another
# test's server on what it took for its core's port).
FIRST_PORT, LAST_PORT = 10_000, 32_767
_handed: set[int] = set()


def _port_block() -> range:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    index = int(worker) if worker.isdigit() else 0
    size = (LAST_PORT - FIRST_PORT) // max(1, workers)
    start = FIRST_PORT + (index % max(1, workers)) * size
    return range(start, start + size)


def free_port() -> int:
    block = _port_block()
    if len(_handed) > len(block) // 2:
        _handed.clear()  # long since bound and released: reusable
    for _ in range(1000):
        port = random.choice(block)
        if port in _handed:
            continue
        with contextlib.closing(socket.socket()) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue  # in use (or lingering): another one
        _handed.add(port)
        return port
    raise RuntimeError(f"no free port in {block}")


def wait_port(port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float = 30) -> None:
    """Until `proc` itself listens on the port. A connection alone is not enough: another process
    may hold the port, and then ours fails to bind while the tests talk to the other one."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        if _listens(proc.pid, port):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{proc.args!r} did not listen on {port}:\n{log.read_text()[-3000:]}")


def _listens(pid: int, port: int) -> bool:
    try:
        connections = psutil.Process(pid).net_connections(kind="tcp")
    except psutil.Error:
        return False
    return any(c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port for c in connections)


@dataclass
class Proc:
    name: str
    module: str
    port: int
    env: dict[str, str]
    log: Path
    popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        out = self.log.open("ab")
        self.popen = subprocess.Popen(
            [sys.executable, "-m", self.module], env=self.env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT
        )
        out.close()
        wait_port(self.port, self.popen, self.log)

    def stop(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self.popen = None


@dataclass
class Stack:
    """A running gateway: simulator + core + facade, each its own process; or, with
    `one_process`, core and facade in one (`python -m core.combined`), both Procs naming it."""

    license: str
    token: str
    sim: Proc
    core: Proc
    facade: Proc
    one_process: bool = False

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.facade.port}/cursor/v1"

    @property
    def root_url(self) -> str:
        return f"http://127.0.0.1:{self.facade.port}"

    @property
    def sim_url(self) -> str:
        return f"http://127.0.0.1:{self.sim.port}"

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.core.port}"

    def procs(self) -> list[Proc]:
        if self.one_process:
            return [self.sim, self.facade]
        return [self.sim, self.core, self.facade]

    def logs(self) -> str:
        return "\n".join(p.log.read_text(errors="replace") for p in self.procs() if p.log.exists())

    def sim_control(self, path: str, payload: dict[str, object] | None = None) -> Any:
        url = f"{self.sim_url}/__sim/{path}"
        response = httpx.post(url, json=payload or {}) if payload is not None else httpx.get(url)
        response.raise_for_status()
        return response.json()

    def chat_requests(self) -> list[dict[str, Any]]:
        """The simulator's log of chat calls (any dialect), oldest first, dialect probes left out."""
        entries = self.sim_control("requests")
        return [e for e in entries if e.get("view") and e["view"]["model"] != PROBE_MODEL]

    def last_view(self) -> dict[str, Any]:
        """What the last chat call asked Cursor for, in the simulator's dialect-neutral view."""
        chats = self.chat_requests()
        assert chats, "the simulator saw no chat call"
        view: dict[str, Any] = chats[-1]["view"]
        return view

    def admin(
        self, method: str, path: str, body: dict[str, object] | None = None, *, key: str | None = None
    ) -> httpx.Response:
        """A call to the facade's admin API (/cursor/admin/api + path) with the stack's admin key."""
        key = self.core.env.get("CURSORGATE_ADMIN_KEY", "") if key is None else key
        headers = {"authorization": f"Bearer {key}"} if key else {}
        url = f"{self.root_url}/cursor/admin/api{path}"
        return httpx.request(method, url, json=body, headers=headers, timeout=60)

    def restart_core(self) -> None:
        if self.one_process:
            self.facade.stop()
            self._start_gateway()
            return
        self.core.stop()
        self.core.start()

    def _start_gateway(self) -> None:
        """One process: it listens on HTTP after core is up; both Procs track it."""
        self.facade.start()
        self.core.popen = self.facade.popen
        assert self.core.popen is not None
        wait_port(self.core.port, self.core.popen, self.core.log)

    def start(self) -> None:
        try:
            self.sim.start()
            if self.one_process:
                self._start_gateway()
            else:
                self.core.start()
                self.facade.start()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        for proc in reversed(self.procs()):
            proc.stop()


def start_stack(
    tmp: Path,
    env_extra: dict[str, str] | None = None,
    *,
    license: str = "sk-test-license",
    dialect: str = "auto",
    one_process: bool = False,
) -> Stack:
    tmp.mkdir(parents=True, exist_ok=True)
    token = make_jwt("auth0|user_test_primary")
    sim_port, grpc_port, http_port = free_port(), free_port(), free_port()
    env = {
        **os.environ,
        "CURSORGATE_ENV_FILE": str(tmp / "none.env"),
        "CURSORGATE_SIMULATOR_PORT": str(sim_port),
        "CURSORGATE_GRPC_PORT": str(grpc_port),
        "CURSORGATE_HTTP_PORT": str(http_port),
        "CURSORGATE_UPSTREAM_URL": f"http://127.0.0.1:{sim_port}",
        "CURSORGATE_LICENSES": license,
        "CURSORGATE_DATABASE_URL": f"sqlite+aiosqlite:///{tmp / 'cursorgate.db'}",
        "CURSORGATE_LOG_LEVEL": "INFO",
        "CURSOR_TOKEN": token,
        "CURSORGATE_UPSTREAM_DIALECT": dialect,
        "CURSORGATE_CLI_INSTALL_URL": f"http://127.0.0.1:{sim_port}/install",
        "CURSORGATE_LOGIN_URL": f"http://127.0.0.1:{sim_port}",
        # Off unless a test asks for it: stacks run side by side and would race for port 9464.
        "CURSORGATE_METRICS_PORT": "0",
        **(env_extra or {}),
    }
    if one_process:
        core = Proc("gateway", "core.combined", grpc_port, env, tmp / "gateway.log")
        facade = Proc("gateway", "core.combined", http_port, env, tmp / "gateway.log")
    else:
        core = Proc("core", "core", grpc_port, env, tmp / "core.log")
        facade = Proc("facade", "facade", http_port, env, tmp / "facade.log")
    stack = Stack(
        license=license,
        token=env["CURSOR_TOKEN"],
        sim=Proc("simulator", "simulator", sim_port, env, tmp / "simulator.log"),
        core=core,
        facade=facade,
        one_process=one_process,
    )
    stack.start()
    return stack
