"""Core and facade in one process (`python -m core.combined`, `CURSORGATE_ONE_PROCESS`): the same
gateway over HTTP, core's gRPC port still open to internal callers, and a SIGTERM that lets the
stream in flight finish before the process exits 0."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import openai
import psutil
import pytest

from cursorgate.v1 import chat_pb2, chat_pb2_grpc
from tests.procs import Stack, start_stack
from tests.test_drain import SLOW, StreamInBackground, chat, wait_open_streams_zero
from tests.test_recovery import START_BOUND_S, start_run, wait_for
from tests.test_recovery import chat as run_chat

MODEL = "claude-4.5-sonnet"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = start_stack(tmp_path_factory.mktemp("combined"), one_process=True)
    yield stack
    stack.stop()


async def test_one_process_serves_http_and_grpc(stack: Stack) -> None:
    assert stack.core.popen is stack.facade.popen  # one process listens on both ports
    assert stack.core.popen is not None
    ports = {c.laddr.port for c in psutil.Process(stack.core.popen.pid).net_connections("tcp")}
    assert {stack.core.port, stack.facade.port} <= ports

    client = openai.OpenAI(base_url=stack.base_url, api_key=stack.license)
    answer = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "combined marker-5c1e"}]
    )
    assert "combined marker-5c1e" in (answer.choices[0].message.content or "")
    streamed = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "streamed marker-77b0"}], stream=True
    )
    text = "".join(c.choices[0].delta.content or "" for c in streamed if c.choices)
    assert "streamed marker-77b0" in text

    # Internal gRPC callers reach the same core, with the same license check.
    async with grpc.aio.insecure_channel(stack.grpc_target) as channel:
        stub = chat_pb2_grpc.ChatServiceStub(channel)
        request = chat_pb2.ChatRequest(
            model=MODEL,
            messages=[
                chat_pb2.Message(
                    role=chat_pb2.ROLE_USER, content=[chat_pb2.ContentPart(text="grpc marker-0d4a")]
                )
            ],
        )
        reply = await stub.Chat(request, metadata=[("authorization", f"Bearer {stack.license}")], timeout=30)
        assert "grpc marker-0d4a" in reply.content
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.Chat(request, metadata=[("authorization", "Bearer sk-not-a-license")], timeout=30)
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_sigterm_drains_then_stops_core(tmp_path: Path) -> None:
    stack = start_stack(tmp_path, {"CURSORGATE_DRAIN_TIMEOUT": "20"}, one_process=True)
    try:
        stream = StreamInBackground(stack, SLOW)
        assert stream.first_data.wait(20) and stream.error is None
        assert stack.facade.popen is not None
        stack.facade.popen.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        refused = chat(stack)
        assert refused.status_code == 503
        assert refused.json()["error"]["code"] == "draining"

        stream.join(20)
        assert stream.error is None and stream.status == 200
        assert stream.lines[-1] == "data: [DONE]"
        assert "slow marker-d7a1" in stream.text()
        # Exit 0 (uvicorn does not re-raise the signal before core has stopped), and core's own
        # shutdown ran: nothing left open upstream.
        assert stack.facade.popen.wait(15) == 0
        log = stack.facade.log.read_text()
        assert log.index("core draining") < log.index("core stopped")
        assert wait_open_streams_zero(stack) == 0
    finally:
        stack.stop()


def test_cursorgate_run_one_process(tmp_path: Path) -> None:
    run = start_run(tmp_path, {"CURSORGATE_ONE_PROCESS": "true"})
    try:
        wait_for("gateway ready", lambda: "ready." in run.log.read_text(), START_BOUND_S, run)
        assert set(run.status()["children"]) == {"simulator", "gateway"}
        answer = run_chat(run, "run marker-9e12")
        assert answer.status_code == 200, answer.text
        assert "run marker-9e12" in answer.json()["choices"][0]["message"]["content"]
        run.popen.send_signal(signal.SIGTERM)
        assert run.popen.wait(60) == 0, run.logs()
        assert run.status()["children"]["gateway"]["state"] == "stopped"
    finally:
        run.stop()
