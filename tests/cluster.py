"""Several gateway replicas on loopback for the multi-replica suites: one simulator, one Redis, one
database (PostgreSQL when CURSORGATE_TEST_POSTGRES_URL is set, else a shared SQLite file), two
cores and two facades, each a real process."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from simulator.config import make_jwt
from tests.procs import Proc, free_port, wait_port
from tests.store_backends import POSTGRES_ENV, scratch_database

MODEL = "claude-4.5-sonnet"
ADMIN_KEY = "adm-cluster-key-0123456789"
LICENSE = "sk-cluster-license"
REDIS = shutil.which("redis-server")


@contextmanager
def redis_server(tmp: Path) -> Iterator[str]:
    """A Debian redis-server on a free loopback port, without persistence; its URL."""
    if REDIS is None:
        pytest.skip("redis-server is not installed (Debian: redis-server; .ci/run installs it)")
    port = free_port()
    log = tmp / "redis.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [REDIS, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_port(port, proc, log)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(10)


@contextmanager
def shared_database(tmp: Path) -> Iterator[str]:
    """A fresh PostgreSQL database when CI names a server, else one SQLite file for all cores."""
    base = os.environ.get(POSTGRES_ENV)
    if not base:
        yield f"sqlite+aiosqlite:///{tmp / 'cluster.db'}"
        return
    with scratch_database(base, "cg_cluster") as url:
        yield url


@dataclass
class Cluster:
    """facades[i] talks to cores[i] alone when pinned, else to both cores round robin."""

    token: str
    sim: Proc
    cores: list[Proc]
    facades: list[Proc]
    license: str = LICENSE

    def url(self, i: int) -> str:
        return f"http://127.0.0.1:{self.facades[i].port}/cursor/v1"

    def sim_control(self, path: str, payload: dict[str, object] | None = None) -> Any:
        url = f"http://127.0.0.1:{self.sim.port}/__sim/{path}"
        response = httpx.post(url, json=payload or {}) if payload is not None else httpx.get(url)
        response.raise_for_status()
        return response.json()

    def admin(self, i: int, method: str, path: str, body: dict[str, object] | None = None) -> httpx.Response:
        url = f"http://127.0.0.1:{self.facades[i].port}/cursor/admin/api{path}"
        headers = {"authorization": f"Bearer {ADMIN_KEY}"}
        return httpx.request(method, url, json=body, headers=headers, timeout=60)

    def accounts(self, i: int) -> dict[str, dict[str, Any]]:
        """The accounts as replica i's core sees them, by label."""
        answer = self.admin(i, "GET", "/accounts")
        assert answer.status_code == 200, answer.text
        return {str(a["label"]): a for a in answer.json()["accounts"]}

    def chat(self, i: int, content: str = "hello", license: str | None = None) -> httpx.Response:
        return httpx.post(
            f"{self.url(i)}/chat/completions",
            json={"model": MODEL, "messages": [{"role": "user", "content": content}]},
            headers={"authorization": f"Bearer {license or self.license}"},
            timeout=60,
        )

    def procs(self) -> list[Proc]:
        return [self.sim, *self.cores, *self.facades]

    def logs(self) -> str:
        return "\n".join(p.log.read_text(errors="replace")[-4000:] for p in self.procs() if p.log.exists())

    def stop(self) -> None:
        for proc in reversed(self.procs()):
            proc.stop()


def start_cluster(
    tmp: Path, redis_url: str, database_url: str, env_extra: dict[str, str] | None = None, *, pinned: bool
) -> Cluster:
    tmp.mkdir(parents=True, exist_ok=True)
    token = make_jwt("auth0|user_cluster_primary")
    sim_port = free_port()
    base = {
        **os.environ,
        "CURSORGATE_ENV_FILE": str(tmp / "none.env"),
        "CURSORGATE_SIMULATOR_PORT": str(sim_port),
        "CURSORGATE_UPSTREAM_URL": f"http://127.0.0.1:{sim_port}",
        "CURSORGATE_CLI_INSTALL_URL": f"http://127.0.0.1:{sim_port}/install",
        "CURSORGATE_LOGIN_URL": f"http://127.0.0.1:{sim_port}",
        "CURSORGATE_LICENSES": LICENSE,
        "CURSORGATE_ADMIN_KEY": ADMIN_KEY,
        "CURSORGATE_DATABASE_URL": database_url,
        "CURSORGATE_REDIS_URL": redis_url,
        "CURSORGATE_LOG_LEVEL": "INFO",
        "CURSOR_TOKEN": token,
        "CURSORGATE_METRICS_PORT": "0",
        **(env_extra or {}),
    }
    sim = Proc("simulator", "simulator", sim_port, dict(base), tmp / "simulator.log")
    cores = []
    for i in range(2):
        port = free_port()
        cores.append(
            Proc(
                f"core-{i}", "core", port, {**base, "CURSORGATE_GRPC_PORT": str(port)}, tmp / f"core-{i}.log"
            )
        )
    both = ",".join(f"127.0.0.1:{c.port}" for c in cores)
    facades = []
    for i in range(2):
        port = free_port()
        env = {**base, "CURSORGATE_HTTP_PORT": str(port)}
        if pinned:
            env["CURSORGATE_CORE_ADDRESS"] = f"127.0.0.1:{cores[i].port}"
        else:
            env["CURSORGATE_CORE_ADDRESS"] = f"ipv4:{both}"
            env["CURSORGATE_CORE_LB_POLICY"] = "round_robin"
        facades.append(Proc(f"facade-{i}", "facade", port, env, tmp / f"facade-{i}.log"))
    cluster = Cluster(token=token, sim=sim, cores=cores, facades=facades)
    try:
        sim.start()
        # One core first: it creates the schema and seeds, so the second one finds them made.
        for proc in [*cores, *facades]:
            proc.start()
    except BaseException:
        cluster.stop()
        raise
    return cluster
