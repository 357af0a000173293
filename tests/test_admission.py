"""Admission control (core/pool/admission.py) through the real processes: past CURSORGATE_MAX_STREAMS
and its queue a call is refused at once, before any upstream work, with a retryable status in
the shape of the API it came in on; a queued call gets its slot when one frees."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from grpc_status import rpc_status

from core.errors import GatewayError, error_info_from_status
from core.pool.admission import Admission
from cursorgate.v1 import chat_pb2, chat_pb2_grpc, errors_pb2
from tests.procs import Stack, start_stack

# One stream that sends a frame and then stays silent (the simulator's stall), holding its slot.
HOLD = "hold the slot\nsim: chunks=3 stall=1 after=1"
QUICK = "hello"


@pytest.fixture(scope="module")
def full(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    gateway = start_stack(
        tmp_path_factory.mktemp("admission"),
        {
            "CURSORGATE_MAX_STREAMS": "1",
            "CURSORGATE_STREAM_QUEUE": "0",
            "CURSORGATE_UPSTREAM_IDLE_TIMEOUT": "120",
        },
    )
    yield gateway
    gateway.stop()


@contextlib.contextmanager
def holding(stack: Stack) -> Iterator[None]:
    """A stream that has its first token and holds the only slot until the block ends."""
    body = {"model": "gpt-5.2", "stream": True, "messages": [{"role": "user", "content": HOLD}]}
    headers = {"Authorization": f"Bearer {stack.license}"}
    with httpx.stream(
        "POST", f"{stack.base_url}/chat/completions", json=body, headers=headers, timeout=60
    ) as r:
        assert r.status_code == 200
        # Not a `for` over r.iter_lines() left by `break`: closing that generator closes the
        # connection, which would end the stream (and free its slot) too early.
        lines = r.iter_lines()
        for line in lines:
            if "Simulated" in line:
                break
        yield
        del lines


def upstream_calls(stack: Stack) -> int:
    return len(stack.chat_requests())


def test_openai_chat_refused_with_503_and_retry_after(full: Stack) -> None:
    headers = {"Authorization": f"Bearer {full.license}"}
    with holding(full):
        before = upstream_calls(full)
        for stream in (False, True):
            body = {"model": "gpt-5.2", "stream": stream, "messages": [{"role": "user", "content": QUICK}]}
            r = httpx.post(f"{full.base_url}/chat/completions", json=body, headers=headers, timeout=30)
            assert r.status_code == 503, r.text
            error = r.json()["error"]
            assert error["type"] == "server_error"
            assert error["code"] == "overloaded"
            assert "capacity" in error["message"]
            assert int(r.headers["retry-after"]) >= 1
        assert upstream_calls(full) == before  # refused before any upstream work


def test_openai_responses_refused_with_503(full: Stack) -> None:
    headers = {"Authorization": f"Bearer {full.license}"}
    with holding(full):
        body = {"model": "gpt-5.2", "input": QUICK, "stream": True}
        r = httpx.post(f"{full.base_url}/responses", json=body, headers=headers, timeout=30)
        assert r.status_code == 503, r.text
        assert r.json()["error"]["code"] == "overloaded"
        assert int(r.headers["retry-after"]) >= 1


def test_anthropic_messages_refused_as_overloaded(full: Stack) -> None:
    headers = {"x-api-key": full.license, "anthropic-version": "2023-06-01"}
    with holding(full):
        body = {"model": "gpt-5.2", "max_tokens": 64, "messages": [{"role": "user", "content": QUICK}]}
        r = httpx.post(f"{full.root_url}/v1/messages", json=body, headers=headers, timeout=30)
        # Anthropic's own status for an overloaded service, which its SDKs retry.
        assert r.status_code == 529, r.text
        assert r.json()["type"] == "error"
        assert r.json()["error"]["type"] == "overloaded_error"
        assert int(r.headers["retry-after"]) >= 1


def test_grpc_refused_with_resource_exhausted_and_error_info(full: Stack) -> None:
    async def call() -> grpc.aio.AioRpcError:
        request = chat_pb2.ChatRequest(
            model="gpt-5.2",
            messages=[chat_pb2.Message(role=chat_pb2.ROLE_USER, content=[chat_pb2.ContentPart(text=QUICK)])],
        )
        metadata = (("authorization", f"Bearer {full.license}"),)
        async with grpc.aio.insecure_channel(full.grpc_target) as channel:
            stub = chat_pb2_grpc.ChatServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as info:
                async for _ in stub.StreamChat(request, metadata=metadata):
                    pass
        return info.value

    with holding(full):
        error = asyncio.run(call())
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    detail = error_info_from_status(rpc_status.from_call(error))
    assert detail is not None
    assert detail.code == errors_pb2.ERROR_CODE_OVERLOADED
    assert detail.retry_after_ms >= 1000


def test_slot_is_free_again_after_the_stream(full: Stack) -> None:
    with holding(full):
        pass
    headers = {"Authorization": f"Bearer {full.license}"}
    body = {"model": "gpt-5.2", "messages": [{"role": "user", "content": QUICK}]}
    # The facade closes core's call as the client leaves; core frees the slot when gRPC reports
    # the call done, so allow it a moment (bounded).
    for _ in range(100):
        r = httpx.post(f"{full.base_url}/chat/completions", json=body, headers=headers, timeout=30)
        if r.status_code != 503:
            break
        asyncio.run(asyncio.sleep(0.05))
    assert r.status_code == 200, r.text


def test_queued_call_waits_then_is_refused_when_its_wait_runs_out(tmp_path: Path) -> None:
    gateway = start_stack(
        tmp_path,
        {
            "CURSORGATE_MAX_STREAMS": "1",
            "CURSORGATE_STREAM_QUEUE": "1",
            "CURSORGATE_STREAM_QUEUE_TIMEOUT": "1",
            "CURSORGATE_UPSTREAM_IDLE_TIMEOUT": "120",
        },
    )
    try:
        headers = {"Authorization": f"Bearer {gateway.license}"}
        body = {"model": "gpt-5.2", "messages": [{"role": "user", "content": QUICK}]}
        with holding(gateway):
            r = httpx.post(f"{gateway.base_url}/chat/completions", json=body, headers=headers, timeout=30)
            assert r.status_code == 503
            assert r.json()["error"]["code"] == "overloaded"
        # With the slot free, the same call is served.
        for _ in range(100):
            r = httpx.post(f"{gateway.base_url}/chat/completions", json=body, headers=headers, timeout=30)
            if r.status_code != 503:
                break
            asyncio.run(asyncio.sleep(0.05))
        assert r.status_code == 200
    finally:
        gateway.stop()


def test_per_account_limit_refuses_when_every_account_is_full(tmp_path: Path) -> None:
    gateway = start_stack(
        tmp_path, {"CURSORGATE_MAX_STREAMS_PER_ACCOUNT": "1", "CURSORGATE_UPSTREAM_IDLE_TIMEOUT": "120"}
    )
    try:
        headers = {"Authorization": f"Bearer {gateway.license}"}
        body = {"model": "gpt-5.2", "messages": [{"role": "user", "content": QUICK}]}
        with holding(gateway):
            r = httpx.post(f"{gateway.base_url}/chat/completions", json=body, headers=headers, timeout=30)
            assert r.status_code == 503, r.text
            assert r.json()["error"]["code"] == "overloaded"
            assert "per account" in r.json()["error"]["message"]
    finally:
        gateway.stop()


# --- the queue's bookkeeping, by construction -----------------------------------------------


def test_queue_hands_slots_over_in_order_and_refuses_past_its_size() -> None:
    async def scenario() -> list[str]:
        admission = Admission(limit=1, queue=2, queue_timeout=60)
        order: list[str] = []
        release = {name: asyncio.Event() for name in ("a", "b", "c")}

        async def user(name: str) -> None:
            async with admission.slot():
                order.append(name)
                await release[name].wait()

        a = asyncio.create_task(user("a"))
        await asyncio.sleep(0)
        b = asyncio.create_task(user("b"))
        c = asyncio.create_task(user("c"))
        for _ in range(3):
            await asyncio.sleep(0)
        assert admission.active == 1 and admission.waiting == 2
        with pytest.raises(GatewayError) as refused:
            async with admission.slot():
                pass
        assert refused.value.code == errors_pb2.ERROR_CODE_OVERLOADED
        for name, task in (("a", a), ("b", b), ("c", c)):
            release[name].set()
            await task
        assert admission.active == 0 and admission.waiting == 0
        return order

    assert asyncio.run(scenario()) == ["a", "b", "c"]


def test_a_waiter_that_leaves_gives_up_its_place() -> None:
    async def scenario() -> int:
        admission = Admission(limit=1, queue=5, queue_timeout=60)
        hold = asyncio.Event()

        async def holder() -> None:
            async with admission.slot():
                await hold.wait()

        first = asyncio.create_task(holder())
        await asyncio.sleep(0)
        waiter = asyncio.create_task(holder())
        await asyncio.sleep(0)
        assert admission.waiting == 1
        waiter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await waiter
        hold.set()
        await first
        return admission.active + admission.waiting

    assert asyncio.run(scenario()) == 0
