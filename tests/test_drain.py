"""Graceful restarts with real processes: SIGTERM the facade or core during a slow stream; the
stream finishes, new requests meanwhile get a retryable 503, readiness is off, then the process
exits and nothing is left open upstream."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from core.healthcheck import check as container_health_check
from tests.procs import Proc, Stack, free_port, start_stack

MODEL = "claude-4.5-sonnet"
# 8 frames, 400 ms apart: a stream of about 3.2 s.
SLOW = "slow marker-d7a1\nsim: chunks=8 delay_ms=400"


class StreamInBackground:
    """One streamed completion read on a thread; its SSE lines, and when the first one came."""

    def __init__(self, stack: Stack, content: str) -> None:
        self.lines: list[str] = []
        self.status = 0
        self.error: BaseException | None = None
        self.first_data = threading.Event()
        body = {"model": MODEL, "stream": True, "messages": [{"role": "user", "content": content}]}
        headers = {"authorization": f"Bearer {stack.license}"}
        self._thread = threading.Thread(
            target=self._run, args=(f"{stack.base_url}/chat/completions", body, headers), daemon=True
        )
        self._thread.start()

    def _run(self, url: str, body: dict[str, Any], headers: dict[str, str]) -> None:
        try:
            with httpx.stream("POST", url, json=body, headers=headers, timeout=60) as response:
                self.status = response.status_code
                for line in response.iter_lines():
                    if line.startswith("data:"):
                        self.first_data.set()
                    if line:
                        self.lines.append(line)
        except BaseException as err:  # reported by the test
            self.error = err
        finally:
            self.first_data.set()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the stream did not end"

    def text(self) -> str:
        import json

        parts = []
        for line in self.lines:
            if line.startswith("data: {"):
                chunk = json.loads(line.removeprefix("data: "))
                parts += [c["delta"].get("content") or "" for c in chunk.get("choices", [])]
        return "".join(parts)


def chat(stack: Stack) -> httpx.Response:
    return httpx.post(
        f"{stack.base_url}/chat/completions",
        json={"model": MODEL, "messages": [{"role": "user", "content": "hi"}]},
        headers={"authorization": f"Bearer {stack.license}"},
        timeout=30,
    )


def wait_open_streams_zero(stack: Stack, timeout: float = 10) -> int:
    deadline = time.monotonic() + timeout
    while (count := int(stack.sim_control("stats")["open_streams"])) and time.monotonic() < deadline:
        time.sleep(0.05)
    return count


def exit_code(proc: Proc, timeout: float) -> int:
    assert proc.popen is not None
    return proc.popen.wait(timeout)


def sigterm(proc: Proc) -> None:
    assert proc.popen is not None
    proc.popen.send_signal(signal.SIGTERM)


@pytest.fixture
def draining_stack(tmp_path: Path) -> Any:
    stack = start_stack(tmp_path, {"CURSORGATE_DRAIN_TIMEOUT": "20"})
    yield stack
    stack.stop()


def test_facade_drains_on_sigterm(draining_stack: Stack) -> None:
    stack = draining_stack
    assert httpx.get(f"{stack.root_url}/readyz").status_code == 200
    stream = StreamInBackground(stack, SLOW)
    assert stream.first_data.wait(20) and stream.error is None
    sigterm(stack.facade)
    time.sleep(0.3)

    ready = httpx.get(f"{stack.root_url}/readyz")
    assert ready.status_code == 503
    assert ready.json() == {"status": "draining"}
    refused = chat(stack)
    assert refused.status_code == 503
    assert refused.headers["retry-after"] == "1"
    assert refused.json()["error"]["type"] == "server_error"
    assert refused.json()["error"]["code"] == "draining"
    assert stack.facade.popen is not None and stack.facade.popen.poll() is None  # still serving

    stream.join(20)
    assert stream.error is None and stream.status == 200
    assert stream.lines[-1] == "data: [DONE]"
    assert "slow marker-d7a1" in stream.text()
    # Exits soon after its last stream (well within the 20 s drain timeout), nothing left upstream.
    exit_code(stack.facade, 10)
    assert wait_open_streams_zero(stack) == 0


def test_facade_drain_timeout_cuts_what_is_left(tmp_path: Path) -> None:
    stack = start_stack(tmp_path, {"CURSORGATE_DRAIN_TIMEOUT": "1"})
    try:
        stream = StreamInBackground(stack, "endless\nsim: chunks=100 delay_ms=200")
        assert stream.first_data.wait(20)
        sigterm(stack.facade)
        started = time.monotonic()
        exit_code(stack.facade, 15)
        assert time.monotonic() - started < 8  # 1 s drain + uvicorn's 1 s, with margin
        stream.join(10)
        assert "data: [DONE]" not in stream.lines  # cut, not finished
        # The cut stream's core call and upstream stream are closed too.
        assert wait_open_streams_zero(stack) == 0
    finally:
        stack.stop()


def health_status(target: str) -> int:
    with grpc.insecure_channel(target) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    return int(reply.status)


def test_core_drains_on_sigterm(draining_stack: Stack) -> None:
    stack = draining_stack
    assert health_status(stack.grpc_target) == health_pb2.HealthCheckResponse.SERVING
    assert container_health_check(stack.grpc_target)  # what compose's health check runs
    stream = StreamInBackground(stack, SLOW)
    assert stream.first_data.wait(20) and stream.error is None
    sigterm(stack.core)
    time.sleep(0.3)

    assert health_status(stack.grpc_target) == health_pb2.HealthCheckResponse.NOT_SERVING
    assert not container_health_check(stack.grpc_target)
    refused = chat(stack)
    assert refused.status_code == 503
    assert refused.headers["retry-after"] == "1"
    assert refused.json()["error"]["code"] == "core_unavailable"
    assert stack.core.popen is not None and stack.core.popen.poll() is None

    stream.join(20)
    assert stream.error is None and stream.status == 200
    assert stream.lines[-1] == "data: [DONE]"
    assert "slow marker-d7a1" in stream.text()
    assert exit_code(stack.core, 10) == 0
    assert wait_open_streams_zero(stack) == 0


def test_core_drain_timeout_cancels_upstream(tmp_path: Path) -> None:
    stack = start_stack(tmp_path, {"CURSORGATE_DRAIN_TIMEOUT": "1"})
    try:
        stream = StreamInBackground(stack, "endless\nsim: chunks=100 delay_ms=200")
        assert stream.first_data.wait(20)
        sigterm(stack.core)
        started = time.monotonic()
        assert exit_code(stack.core, 15) == 0
        assert time.monotonic() - started < 8
        stream.join(10)
        assert "data: [DONE]" in stream.lines  # ended in-band, with an error event before it
        assert any('"error"' in line for line in stream.lines)
        assert wait_open_streams_zero(stack) == 0
    finally:
        stack.stop()


def test_rolling_restart_of_one_of_two_cores_loses_nothing(tmp_path: Path) -> None:
    """Two cores on one database, the facade balancing round robin with client-side health checks:
    SIGTERM one core while streams run on both. Its streams finish, and every new request in the
    meantime is served by the other core (none sees the draining one's refusal)."""
    stack = start_stack(tmp_path, {"CURSORGATE_DRAIN_TIMEOUT": "20"})
    second = Proc("core2", "core", free_port(), {**stack.core.env}, tmp_path / "core2.log")
    second.env["CURSORGATE_GRPC_PORT"] = str(second.port)
    try:
        second.start()
        stack.facade.stop()
        stack.facade = Proc(
            "facade",
            "facade",
            stack.facade.port,
            {
                **stack.facade.env,
                "CURSORGATE_CORE_ADDRESS": f"ipv4:127.0.0.1:{stack.core.port},127.0.0.1:{second.port}",
                "CURSORGATE_CORE_LB_POLICY": "round_robin",
            },
            tmp_path / "facade-rr.log",
        )
        stack.facade.start()
        time.sleep(1)  # both subchannels connected and health-watched

        streams = [StreamInBackground(stack, SLOW) for _ in range(6)]
        for stream in streams:
            assert stream.first_data.wait(20) and stream.error is None
        sigterm(stack.core)
        time.sleep(0.5)
        assert stack.core.popen is not None and stack.core.popen.poll() is None  # draining
        statuses = [chat(stack).status_code for _ in range(8)]
        assert statuses == [200] * 8

        for stream in streams:
            stream.join(20)
            assert stream.error is None and stream.status == 200
            assert stream.lines[-1] == "data: [DONE]"
            assert "slow marker-d7a1" in stream.text()
        assert exit_code(stack.core, 10) == 0
        # Round robin put some of the six streams on the core that drained.
        drained = [line for line in stack.core.log.read_text().splitlines() if "core draining:" in line]
        assert drained and "draining: 0 call(s)" not in drained[0]
        assert wait_open_streams_zero(stack) == 0
    finally:
        second.stop()
        stack.stop()
