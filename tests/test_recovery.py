"""`cursorgate run` survives kill -9 of any layer: the supervisor restarts it, the facade answers
503 + Retry-After while core is away and reconnects by itself, nothing promised is lost, and a
crash loop ends the run with a message. Real processes throughout, on free loopback ports."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from grpc_health.v1 import health, health_pb2_grpc
from sqlalchemy.ext.asyncio import create_async_engine

from core.errors import Code, GatewayError
from core.licensing.licenses import License, LicenseRegistry
from core.store import Journal, Store
from core.store.quota import QuotaLedger
from cursorgate.v1 import models_pb2, models_pb2_grpc
from facade.core_client import DOWN_AFTER_S, CoreClient
from facade.errors import from_error_info
from tests.procs import ROOT, free_port
from tests.store_backends import BACKENDS, database_url, distinct_token

__all__ = ["database_url"]

LICENSE = "sk-recovery-license"
ADMIN_KEY = "adm-recovery-key-0123456789"
AUTH = {"Authorization": f"Bearer {LICENSE}"}
# Bounds with a wide margin over what was measured (README: a core restart takes ~2-5 s here).
RECOVERY_BOUND_S = 30.0
START_BOUND_S = 60.0
LONG_STREAM = "go\nsim: chunks=60 delay_ms=250"  # ~15 s: still running when a process is killed


@dataclass
class Run:
    """A `cursorgate run` process and what it tells through its status file and /healthz."""

    popen: subprocess.Popen[bytes]
    status_file: Path
    log: Path
    http_port: int
    grpc_port: int
    sim_port: int

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def status(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.status_file.read_text())
        return data

    def pid(self, child: str) -> int:
        pid: int = self.status()["children"][child]["pid"]
        return pid

    def health(self) -> dict[str, Any]:
        data: dict[str, Any] = httpx.get(f"{self.base_url}/healthz", timeout=5).json()
        return data

    def sim_stats(self) -> dict[str, int]:
        data: dict[str, int] = httpx.get(f"http://127.0.0.1:{self.sim_port}/__sim/stats", timeout=5).json()
        return data

    def admin(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        response = httpx.request(
            method,
            f"{self.base_url}/cursor/admin/api{path}",
            json=body,
            headers={"authorization": f"Bearer {ADMIN_KEY}"},
            timeout=60,
        )
        assert response.is_success, response.text
        return response.json()

    def logs(self, tail: int = 6000) -> str:
        return self.log.read_text(errors="replace")[-tail:]

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(40)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        # Whatever the supervisor left behind (it should be nothing) must not outlive the test.
        with contextlib.suppress(OSError, ValueError, KeyError):
            for child in self.status()["children"].values():
                if child["pid"]:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(child["pid"], signal.SIGKILL)


def run_env(tmp: Path, extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CURSORGATE_") and k != "CURSOR_TOKEN"}
    return env | {
        "CURSORGATE_ENV_FILE": str(tmp / "none.env"),
        "CURSORGATE_SIMULATOR_PORT": str(free_port()),
        "CURSORGATE_GRPC_PORT": str(free_port()),
        "CURSORGATE_HTTP_PORT": str(free_port()),
        "CURSORGATE_LICENSES": LICENSE,
        "CURSORGATE_DATABASE_URL": f"sqlite+aiosqlite:///{tmp / 'cursorgate.db'}",
        "CURSORGATE_SUPERVISOR_STATUS_FILE": str(tmp / "status.json"),
        **extra,
    }


def start_run(tmp: Path, extra: dict[str, str]) -> Run:
    env = run_env(tmp, extra)
    log = tmp / "run.log"
    with log.open("ab") as out:
        popen = subprocess.Popen(
            [sys.executable, "-m", "core.cli", "run"], env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT
        )
    return Run(
        popen,
        tmp / "status.json",
        log,
        int(env["CURSORGATE_HTTP_PORT"]),
        int(env["CURSORGATE_GRPC_PORT"]),
        int(env["CURSORGATE_SIMULATOR_PORT"]),
    )


def wait_for(what: str, check: Any, bound: float, run: Run) -> Any:
    deadline = time.monotonic() + bound
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.TransportError, OSError, ValueError, KeyError):
            value = check()
            if value:
                return value
        time.sleep(0.05)
    raise AssertionError(f"{what}: not within {bound} s\n{run.logs()}")


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    """One supervised gateway for the kill tests. A flush interval far longer than any test:
    what is promised to survive must not depend on the periodic flush having run."""
    run = start_run(
        tmp_path_factory.mktemp("recovery"),
        {"CURSORGATE_ADMIN_KEY": ADMIN_KEY, "CURSORGATE_STORE_FLUSH_INTERVAL": "30"},
    )
    try:
        wait_for("gateway ready", lambda: "ready." in run.log.read_text(), START_BOUND_S, run)
        yield run
    finally:
        run.stop()


def chat(run: Run, prompt: str = "hello", key: str = LICENSE) -> httpx.Response:
    return httpx.post(
        f"{run.base_url}/cursor/v1/chat/completions",
        json={"model": "gpt-5.2", "messages": [{"role": "user", "content": prompt}]},
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )


async def read_stream(http: httpx.AsyncClient, on_open: Callable[[], None]) -> list[str]:
    """The `data:` payloads of one streamed completion, as received until the stream ends."""
    body = {"model": "gpt-5.2", "messages": [{"role": "user", "content": LONG_STREAM}], "stream": True}
    payloads: list[str] = []
    async with http.stream("POST", "/cursor/v1/chat/completions", json=body, headers=AUTH) as response:
        assert response.status_code == 200
        async for line in response.aiter_lines():
            if line.startswith("data: "):
                payloads.append(line.removeprefix("data: "))
                if len(payloads) == 2:  # the role chunk and the first content chunk: open upstream
                    on_open()
    return payloads


async def open_streams(run: Run, n: int) -> tuple[list[asyncio.Task[list[str]]], httpx.AsyncClient]:
    """n streams, returned once every one has received content."""
    http = httpx.AsyncClient(
        base_url=run.base_url, timeout=60, limits=httpx.Limits(max_connections=n + 10), trust_env=False
    )
    opened, all_open = 0, asyncio.Event()

    def on_open() -> None:
        nonlocal opened
        opened += 1
        if opened == n:
            all_open.set()

    tasks = [asyncio.create_task(read_stream(http, on_open)) for _ in range(n)]
    await asyncio.wait_for(all_open.wait(), 60)
    return tasks, http


def assert_no_open_upstream(run: Run) -> None:
    wait_for("upstream streams closed", lambda: run.sim_stats()["open_streams"] == 0, 15, run)


async def test_kill_core_under_50_streams(gateway: Run) -> None:
    run = gateway
    tasks, http = await open_streams(run, 50)
    assert run.sim_stats()["open_streams"] == 50
    restarts_before = run.health()["processes"]["core"]["restarts"]

    killed_at = time.monotonic()
    os.kill(run.pid("core"), signal.SIGKILL)

    # An internal gRPC caller, straight at core: UNAVAILABLE while it is away.
    async with grpc.aio.insecure_channel(f"127.0.0.1:{run.grpc_port}") as channel:
        stub = models_pb2_grpc.ModelServiceStub(channel)
        metadata = (("authorization", f"Bearer {LICENSE}"),)
        with pytest.raises(grpc.aio.AioRpcError) as down:
            await stub.ListModels(models_pb2.ListModelsRequest(), metadata=metadata, timeout=5)
        assert down.value.code() == grpc.StatusCode.UNAVAILABLE

        # Every stream ends with one clean OpenAI error event, then [DONE].
        streams = await asyncio.wait_for(asyncio.gather(*tasks), 30)
        await http.aclose()
        for payloads in streams:
            assert payloads[-1] == "[DONE]"
            error = json.loads(payloads[-2])["error"]
            assert set(error) == {"message", "type", "param", "code"}
            assert (error["type"], error["code"]) == ("server_error", "core_unavailable")
            assert all("error" not in json.loads(p) for p in payloads[:-2])

        # New requests: 503 with Retry-After in OpenAI's shape, never a hang, until core is back.
        refused: list[httpx.Response] = []
        seen_links: set[str] = set()
        while True:
            assert time.monotonic() - killed_at < RECOVERY_BOUND_S, run.logs()
            seen_links.add(run.health()["core_link"])
            started = time.monotonic()
            response = chat(run)
            assert time.monotonic() - started < 6  # a fail-fast 503, not a wait for core
            if response.status_code == 200:
                break
            refused.append(response)
            await asyncio.sleep(0.1)
        recovered_s = time.monotonic() - killed_at
        print(f"RECOVERY core kill -9 -> first 200: {recovered_s:.2f} s, {len(refused)} requests got 503")
        assert refused, "core was back before any request could see it away"
        for answer in refused:
            assert answer.status_code == 503, answer.text
            assert answer.headers["retry-after"] == "1"
            assert answer.json()["error"]["code"] == "core_unavailable"
            assert set(answer.json()["error"]) == {"message", "type", "param", "code"}
        assert "reconnecting" in seen_links
        assert response.json()["choices"][0]["message"]["content"].endswith("You said: hello")

        # The internal caller succeeds on retry, on the same channel.
        models = await stub.ListModels(
            models_pb2.ListModelsRequest(), metadata=metadata, timeout=10, wait_for_ready=True
        )
        assert any(m.id == "gpt-5.2" for m in models.models)

    health = run.health()
    assert health["core_link"] == "up"
    assert health["processes"]["core"]["restarts"] == restarts_before + 1
    assert health["processes"]["core"]["last_exit"] == -signal.SIGKILL
    assert "cursorgate: core died (killed by SIGKILL (-9)); restart" in run.logs(tail=0)
    assert_no_open_upstream(run)


async def test_kill_facade_while_streaming(gateway: Run) -> None:
    run = gateway
    tasks, http = await open_streams(run, 10)
    assert run.sim_stats()["open_streams"] == 10
    os.kill(run.pid("facade"), signal.SIGKILL)
    killed_at = time.monotonic()

    # The clients lose their connections; core notices its caller is gone and closes upstream.
    for outcome in await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 30):
        assert isinstance(outcome, httpx.TransportError), outcome
    await http.aclose()
    assert_no_open_upstream(run)

    wait_for("facade back", lambda: chat(run).status_code == 200, RECOVERY_BOUND_S, run)
    print(f"RECOVERY facade kill -9 -> first 200: {time.monotonic() - killed_at:.2f} s")
    # The facade may answer a moment before the supervisor's readiness probe has seen it.
    wait_for("facade running", lambda: run.health()["processes"]["facade"]["state"] == "running", 10, run)
    facade = run.health()["processes"]["facade"]
    assert (facade["restarts"], facade["last_exit"], facade["state"]) == (1, -signal.SIGKILL, "running")


def test_promised_state_survives_kill_of_core(gateway: Run) -> None:
    run = gateway
    quota = run.admin("POST", "/licenses", {"name": "quota", "request_quota": 3})
    revoked = run.admin("POST", "/licenses", {"name": "revoked"})
    run.admin("POST", f"/licenses/{revoked['license']['id']}/revoke")
    # A second account, rate limited at the simulator: it is least recently used, so the next
    # request tries it first, it cools down, and the request fails over to the first account.
    limited = distinct_token("auth0|user_recovery_limited")
    run.admin("POST", "/accounts", {"token": limited, "label": "limited"})
    httpx.post(
        f"http://127.0.0.1:{run.sim_port}/__sim/tokens",
        json={"token": limited, "rate_limited_until": 300, "retry_after": 300},
    ).raise_for_status()
    for _ in range(3):
        assert chat(run, key=quota["key"]).status_code == 200
    accounts = {a["label"]: a for a in run.admin("GET", "/accounts")["accounts"]}
    assert accounts["limited"]["status"] == "cooling_down"

    # Far inside the 30 s flush interval: only writes made before serving, or at once, are there.
    time.sleep(0.3)
    os.kill(run.pid("core"), signal.SIGKILL)
    wait_for("core back", lambda: chat(run).status_code == 200, RECOVERY_BOUND_S, run)

    licenses = {x["name"]: x for x in run.admin("GET", "/licenses")["licenses"]}
    assert int(licenses["quota"]["requests_used"]) == 3
    assert licenses["revoked"]["revoked"] is True
    after = {a["label"]: a for a in run.admin("GET", "/accounts")["accounts"]}
    assert after["limited"]["status"] == "cooling_down"
    assert after["limited"]["cooldown_until"] == accounts["limited"]["cooldown_until"]
    over = chat(run, key=quota["key"])
    assert over.status_code == 429, over.text
    assert over.json()["error"]["code"] == "insufficient_quota"
    assert chat(run, key=revoked["key"]).status_code == 401


def test_sigterm_stops_everything_in_order(gateway: Run) -> None:
    """Last of the module's gateway tests: it ends the run."""
    run = gateway
    pids = {name: run.pid(name) for name in ("simulator", "core", "facade")}
    run.popen.send_signal(signal.SIGTERM)
    assert run.popen.wait(60) == 0, run.logs()
    for name, pid in pids.items():
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
        assert run.status()["children"][name]["state"] == "stopped"
    log = run.logs(tail=0)
    # Last started, first stopped: the facade is gone before core is asked to stop.
    assert log.rindex(f"Finished server process [{pids['facade']}]") < log.rindex("core draining")
    assert " died (" not in log[log.rindex("core is back") :]  # stopping is not crashing


def alive(pid: int) -> bool:
    """Running, not a zombie (a killed supervisor's children are reaped by whoever adopts them)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_children_do_not_outlive_a_killed_supervisor(tmp_path: Path) -> None:
    """Orphans would keep the ports, and the next `cursorgate run` would crash-loop on them."""
    run = start_run(
        tmp_path,
        {
            "CURSOR_TOKEN": distinct_token("auth0|user_orphans"),
            "CURSORGATE_UPSTREAM_URL": "http://127.0.0.1:9",
        },
    )
    try:
        wait_for("gateway ready", lambda: "ready." in run.log.read_text(), START_BOUND_S, run)
        pids = [run.pid("core"), run.pid("facade")]
        run.popen.kill()
        run.popen.wait()
        wait_for("children gone", lambda: not any(alive(pid) for pid in pids), 30, run)
    finally:
        run.stop()


@pytest.mark.timeout(300)
def test_crash_loop_ends_the_run(tmp_path: Path) -> None:
    """Core cannot start (its port is taken by someone else): 3 crashes (5 by default; fewer
    keep the test short, each start costs seconds of imports), then exit 1 saying why."""
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        grpc_port = squatter.getsockname()[1]
        run = start_run(
            tmp_path,
            {
                "CURSORGATE_GRPC_PORT": str(grpc_port),
                "CURSORGATE_RESTART_BACKOFF": "0.1",
                "CURSORGATE_CRASH_LOOP_CRASHES": "3",
                "CURSOR_TOKEN": distinct_token("auth0|user_crash_loop"),
                "CURSORGATE_UPSTREAM_URL": f"http://127.0.0.1:{free_port()}",
            },
        )
        try:
            code = run.popen.wait(3 * START_BOUND_S)
        finally:
            run.stop()
    log = run.logs(tail=0)
    assert code == 1, log
    assert "cursorgate: core crashed 3 times within 60 s (last: exit code 1); giving up" in log
    assert log.count("cursorgate: core died (exit code 1); restart") == 2
    assert "restart 1 in 0.1 s" in log and "restart 2 in 0.2 s" in log  # backoff doubles
    assert "ready." not in log  # the facade was never started behind a core that is not there
    assert {c["state"] for c in run.status()["children"].values()} == {"stopped"}


@pytest.mark.parametrize("database_url", BACKENDS, indirect=True)
async def test_quota_is_charged_in_the_store_before_serving(database_url: str) -> None:
    """Concurrent uses of a quota'd license: exactly the quota is admitted, counting uses this
    process has not flushed yet, and each admitted use is in the store when `use` returns."""
    store = await Store.open(database_url)
    journal = Journal(store, interval=60, keep_rows=10)
    try:
        lic = License(id="lic_q", key_hash="h" * 64, request_quota=4)
        await store.add_license(lic)
        registry = LicenseRegistry([lic], on_use=journal.count_use, charge=QuotaLedger(store, journal).charge)
        journal.count_use(lic)  # one use counted before the quota mattered, not flushed yet

        outcomes = await asyncio.gather(*(registry.use(lic) for _ in range(10)), return_exceptions=True)
        assert outcomes.count(None) == 3
        refusals = [o for o in outcomes if o is not None]
        assert all(isinstance(o, GatewayError) and o.code == Code.ERROR_CODE_QUOTA_EXCEEDED for o in refusals)
        assert {x.id: x.requests_used for x in await store.licenses()} == {"lic_q": 3}
        await journal.flush()
        assert {x.id: x.requests_used for x in await store.licenses()} == {"lic_q": 4}
        assert lic.requests_used == 4
    finally:
        await store.close()


async def test_quota_refuses_retryably_without_its_store(tmp_path: Path) -> None:
    """Serving a quota'd license without counting could exceed its quota: 503 + Retry-After."""
    store = Store(create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'missing' / 'x.db'}"))
    lic = License(id="lic_q", key_hash="h" * 64, request_quota=4)
    try:
        with pytest.raises(GatewayError) as refused:
            await QuotaLedger(store, Journal(store, interval=60, keep_rows=10)).charge(lic)
    finally:
        await store.close()
    assert refused.value.code == Code.ERROR_CODE_STORE_UNAVAILABLE
    assert refused.value.status_code == grpc.StatusCode.UNAVAILABLE
    answer = from_error_info(refused.value.to_info())
    assert (answer.status, answer.code, answer.headers) == (503, "store_unavailable", {"Retry-After": "1"})
    assert lic.requests_used == 0


async def test_facade_link_tells_up_reconnecting_down_and_reconnects_by_itself() -> None:
    """No request in between: the channel finds a restarted core on its own."""
    port = free_port()

    async def serve() -> grpc.aio.Server:
        server = grpc.aio.server()
        health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        return server

    async def link_becomes(expected: str) -> None:
        async with asyncio.timeout(10):
            while client.link() != expected:
                await asyncio.sleep(0.02)

    server = await serve()
    client = CoreClient(f"127.0.0.1:{port}")
    try:
        await link_becomes("up")
        await server.stop(None)
        await link_becomes("reconnecting")
        assert client.lost_at is not None
        client.lost_at -= DOWN_AFTER_S  # as if it had been away that long
        assert client.link() == "down"
        server = await serve()
        started = time.monotonic()
        await link_becomes("up")
        assert time.monotonic() - started < 3  # retries every 0.25 s, not gRPC's up to 120 s
    finally:
        await client.close()
        await server.stop(None)
