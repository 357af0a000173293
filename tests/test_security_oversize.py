"""Issue 14, finding 1: one oversized request must not cool the account pool down for everyone.

Cursor (and the simulator: connect's default) refuses a message over 4 MiB with resource_exhausted
"message is larger than configured max". The gateway refuses such a request itself, before any
upstream work, and when one gets through anyway (an image fetched by URL), the refusal is the
caller's fault: no cooldown, no failover.
"""

from __future__ import annotations

import io
import os
import secrets
import threading
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from connectrpc.code import Code as ConnectCode
from connectrpc.errors import ConnectError
from PIL import Image

from core.api.validate import MAX_UPSTREAM_BYTES, upstream_size_bound, validate_chat
from core.errors import GatewayError
from core.pool.accounts import Account, AccountPool
from core.pool.router import Router
from core.upstream.errors import RETRYABLE, Failure, UpstreamError, classify
from core.upstream.images import ImageLoader
from core.upstream.legacy.request import Environment, build_request
from cursorgate.v1 import chat_pb2, errors_pb2
from tests.procs import Stack, start_stack

MIB = 1024 * 1024


def noise_png(side: int) -> bytes:
    """A PNG of random pixels: incompressible, so its size on the wire is its size."""
    out = io.BytesIO()
    Image.frombytes("RGB", (side, side), os.urandom(side * side * 3)).save(out, format="PNG")
    return out.getvalue()


# About 4.7 MiB: over Cursor's 4 MiB, under the image cap the stack below allows.
BIG_PNG = noise_png(1280)


class _ImageHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("content-type", "image/png")
        self.send_header("content-length", str(len(BIG_PNG)))
        self.end_headers()
        self.wfile.write(BIG_PNG)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def image_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ImageHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/big.png"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    env = {
        # The image test fetches from loopback, and its image is over 4 MiB.
        "CURSORGATE_IMAGE_FETCH_PRIVATE": "1",
        "CURSORGATE_IMAGE_MAX_BYTES": str(6 * MIB),
        "CURSORGATE_IMAGE_FETCH_TIMEOUT": "30",
    }
    stack = start_stack(tmp_path_factory.mktemp("oversize"), env)
    yield stack
    stack.stop()


def post_chat(stack: Stack, messages: list[dict[str, object]]) -> httpx.Response:
    body = {"model": "gpt-5.2", "messages": messages}
    headers = {"Authorization": f"Bearer {stack.license}"}
    return httpx.post(f"{stack.base_url}/chat/completions", json=body, headers=headers, timeout=60)


def assert_pool_still_serves(stack: Stack) -> None:
    after = post_chat(stack, [{"role": "user", "content": "hello after the big one"}])
    # One account: had the big request cooled it down, this would be a 429.
    assert after.status_code == 200, after.text


def test_oversized_request_is_413_before_upstream(gateway: Stack) -> None:
    # Random text: it does not shrink under gzip, and 5 MiB is well under the facade's body cap.
    big = secrets.token_urlsafe(5 * MIB)
    response = post_chat(gateway, [{"role": "user", "content": big}])
    assert response.status_code == 413, response.text[:300]
    error = response.json()["error"]
    assert error["code"] == "request_too_large"
    assert error["param"] == "messages"
    assert "MiB" in error["message"]
    assert_pool_still_serves(gateway)


def test_upstream_size_refusal_is_the_callers_fault(gateway: Stack, image_server: str) -> None:
    """An image fetched by URL is only known upstream: Cursor's refusal must not cool the account."""
    content = [
        {"type": "text", "text": "what is in it?"},
        {"type": "image_url", "image_url": {"url": image_server}},
    ]
    response = post_chat(gateway, [{"role": "user", "content": content}])
    assert response.status_code == 413, response.text[:300]
    assert response.json()["error"]["code"] == "request_too_large"
    assert_pool_still_serves(gateway)


# --- units: the bound, the classifier, the router ---------------------------------------------


def text_request(text: str) -> chat_pb2.ChatRequest:
    request = chat_pb2.ChatRequest(model="gpt-5.2")
    request.messages.add(role=chat_pb2.ROLE_USER).content.add(text=text)
    return request


def test_size_bound_counts_every_copy_of_tool_traffic() -> None:
    # A tool call's arguments travel three times upstream, its output twice (once JSON-escaped):
    # 1.3 MiB of arguments is fine as text, too much as a tool call.
    request = text_request("hi")
    assistant = request.messages.add(role=chat_pb2.ROLE_ASSISTANT)
    assistant.tool_calls.add(id="call_1", name="f", arguments="a" * (1300 * 1024))
    request.messages.add(role=chat_pb2.ROLE_TOOL, tool_call_id="call_1").content.add(text="ok")
    assert upstream_size_bound(request) > 3 * 1300 * 1024
    with pytest.raises(GatewayError) as caught:
        validate_chat(request)
    assert caught.value.code == errors_pb2.ERROR_CODE_REQUEST_TOO_LARGE
    validate_chat(text_request("a" * (1300 * 1024)))  # the same bytes as plain text pass


async def test_size_bound_covers_the_built_upstream_request() -> None:
    """The bound is an upper bound of what is really sent, for text, tools and tool traffic."""
    request = text_request("é" * 5000 + "plain")
    request.messages.add(role=chat_pb2.ROLE_SYSTEM).content.add(text="be brief " * 300)
    for i in range(40):
        assistant = request.messages.add(role=chat_pb2.ROLE_ASSISTANT)
        assistant.content.add(text=f"calling {i}")
        assistant.tool_calls.add(id=f"call_{i}", name="lookup", arguments='{"q": "\u0001' + "x" * i + '"}')
        tool = request.messages.add(role=chat_pb2.ROLE_TOOL, tool_call_id=f"call_{i}")
        tool.content.add(text="\x01\x02 résultat \n" * 50)
    tool_def = request.tools.add(name="lookup", description="finds things")
    tool_def.parameters.update(
        {"type": "object", "properties": {"q": {"type": "string", "description": "\u0002" * 200}}}
    )
    built = await build_request(request, Environment("2.3.41"), ImageLoader(MIB, 1.0))
    assert built.ByteSize() <= upstream_size_bound(request)


def test_size_bound_is_under_the_upstream_limit() -> None:
    assert MAX_UPSTREAM_BYTES < 4 * MIB
    validate_chat(text_request("a" * (MAX_UPSTREAM_BYTES - 64 * 1024)))
    with pytest.raises(GatewayError):
        validate_chat(text_request("a" * MAX_UPSTREAM_BYTES))


def test_message_too_large_is_not_a_rate_limit() -> None:
    err = classify(
        ConnectError(ConnectCode.RESOURCE_EXHAUSTED, "message is larger than configured max 4194304")
    )
    assert err.failure is Failure.TOO_LARGE
    assert err.failure not in RETRYABLE
    assert err.code == errors_pb2.ERROR_CODE_REQUEST_TOO_LARGE
    # A bare resource_exhausted is still a rate limit.
    assert classify(ConnectError(ConnectCode.RESOURCE_EXHAUSTED, "slow down")).failure is Failure.RATE_LIMITED


class _Refusing:
    def __init__(self, failure: Failure) -> None:
        self.failure = failure
        self.calls = 0

    async def stream_chat(
        self, account: Account, request: chat_pb2.ChatRequest, time_remaining: float | None
    ) -> AsyncIterator[chat_pb2.ChatEvent]:
        self.calls += 1
        raise UpstreamError(self.failure, "refused")
        yield  # pragma: no cover - makes this an async generator


@pytest.mark.parametrize("failure", [Failure.TOO_LARGE, Failure.BAD_REQUEST])
async def test_caller_faults_leave_accounts_alone(failure: Failure) -> None:
    accounts = [Account(id=f"acc_{i}", token=f"t.{i}.x") for i in range(3)]
    pool = AccountPool(accounts)
    upstream = _Refusing(failure)
    router = Router(pool, upstream, attempts=3)
    with pytest.raises(UpstreamError):
        async for _ in router.stream(text_request("hi"), None):
            pass
    assert upstream.calls == 1, "a request's own fault must not fail over to other accounts"
    for account in accounts:
        assert account.cooldown_until == 0 and account.enabled and account.failures == 0
        assert account.last_error == ""


def test_no_traceback_in_logs(gateway: Stack) -> None:
    assert "Traceback" not in gateway.logs()
