"""Fault injection: each upstream fault has a defined outcome for the caller, and nothing leaks.

Before the first byte a failure is an HTTP error (after failover, when an account is left); after
it, the SSE stream ends with an OpenAI-style error event and [DONE].
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.procs import Stack, free_port, start_stack

pytestmark = pytest.mark.every_dialect

FAST_TIMEOUTS = {"CURSORGATE_UPSTREAM_IDLE_TIMEOUT": "1", "CURSORGATE_UPSTREAM_CONNECT_TIMEOUT": "1.5"}


@pytest.fixture(scope="module")
def faulty(tmp_path_factory: pytest.TempPathFactory, dialect: str) -> Iterator[Stack]:
    gateway = start_stack(tmp_path_factory.mktemp("faults"), FAST_TIMEOUTS, dialect=dialect)
    yield gateway
    gateway.stop()


def body(prompt: str, stream: bool, model: str = "gpt-5.2") -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": prompt}], "stream": stream}


def call(stack: Stack, prompt: str, stream: bool = False) -> httpx.Response:
    return httpx.post(
        f"{stack.base_url}/chat/completions",
        json=body(prompt, stream),
        headers={"Authorization": f"Bearer {stack.license}"},
        timeout=30,
    )


def sse_events(response: httpx.Response) -> list[Any]:
    lines = [line.removeprefix("data: ") for line in response.text.splitlines() if line.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    return [json.loads(line) for line in lines[:-1]]


def assert_no_open_streams(stack: Stack) -> None:
    deadline = time.monotonic() + 2
    while (stats := stack.sim_control("stats"))["open_streams"] and time.monotonic() < deadline:
        time.sleep(0.02)
    assert stats["open_streams"] == 0


@pytest.mark.parametrize(
    ("directive", "status", "code"),
    [
        ("error=unavailable", 503, "upstream_unavailable"),
        ("error=rate_limited retry_after=0.2", 429, "rate_limit_exceeded"),
        ("error=usage_limit retry_after=0.2", 429, "insufficient_quota"),
        ("error=outdated", 502, "upstream_outdated_client"),
        ("error=bad_model", 404, "model_not_found"),
        ("error=internal", 502, "upstream_error"),
        ("error=too_large", 413, "request_too_large"),
        ("break=1", 503, "upstream_unavailable"),
        ("stall=1", 503, "upstream_unavailable"),
    ],
)
@pytest.mark.parametrize("stream", [False, True])
def test_fault_before_first_byte(faulty: Stack, directive: str, status: int, code: str, stream: bool) -> None:
    response = call(faulty, f"hello\nsim: {directive}", stream)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert set(error) == {"message", "type", "param", "code"}
    assert faulty.token not in response.text
    if status == 429:
        assert int(response.headers["retry-after"]) >= 1
        time.sleep(0.3)  # let the account's cool-down (the retry hint) pass
    assert_no_open_streams(faulty)


@pytest.mark.parametrize(
    ("directive", "code"),
    [
        ("error=internal after=2", "upstream_error"),
        ("break=1 after=2", "upstream_unavailable"),
        ("malformed=1 after=2", "upstream_error"),
        ("stall=1 after=2", "upstream_timeout"),
    ],
)
def test_fault_mid_stream_ends_with_error_event(faulty: Stack, directive: str, code: str) -> None:
    response = call(faulty, f"hello\nsim: chunks=6 {directive}", stream=True)
    assert response.status_code == 200
    events = sse_events(response)
    content = [
        e for e in events if "choices" in e and e["choices"] and e["choices"][0]["delta"].get("content")
    ]
    assert len(content) == 2
    error = events[-1]["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == code
    assert_no_open_streams(faulty)


@pytest.mark.parametrize(
    ("directive", "status", "code"),
    [
        ("break=1 after=2", 503, "upstream_unavailable"),
        ("malformed=1 after=2", 502, "upstream_error"),
        ("stall=1 after=2", 504, "upstream_timeout"),
    ],
)
def test_fault_mid_answer_non_stream(faulty: Stack, directive: str, status: int, code: str) -> None:
    """Non-stream callers get nothing partial: the whole answer fails with the fault's status."""
    response = call(faulty, f"hello\nsim: chunks=6 {directive}")
    assert response.status_code == status
    assert response.json()["error"]["code"] == code
    assert_no_open_streams(faulty)


def test_size_refusal_does_not_cool_the_account(faulty: Stack) -> None:
    """Cursor's "message is larger than configured max" is the request's fault (issue 14)."""
    refused = call(faulty, "hello\nsim: error=too_large", stream=False)
    assert refused.status_code == 413, refused.text
    assert call(faulty, "hello again", stream=False).status_code == 200


def test_deadline_propagates_to_upstream(faulty: Stack) -> None:
    assert call(faulty, "deadline check").status_code == 200
    timeout_ms = int(faulty.chat_requests()[-1]["headers"]["connect-timeout-ms"])
    # The facade's 600 s deadline, as gRPC carries it (rounded up to the next second at most).
    assert 590_000 < timeout_ms <= 601_000


def test_client_disconnect_cancels_upstream(faulty: Stack) -> None:
    before = faulty.sim_control("stats")["cancelled_streams"]
    with httpx.stream(
        "POST",
        f"{faulty.base_url}/chat/completions",
        json=body("hold on\nsim: stall=1 after=2", True),
        headers={"Authorization": f"Bearer {faulty.license}"},
        timeout=30,
    ) as response:
        lines = response.iter_lines()
        while "content" not in next(lines):
            pass
        assert faulty.sim_control("stats")["open_streams"] == 1
    closed = time.monotonic()
    assert_no_open_streams(faulty)
    elapsed = time.monotonic() - closed
    assert faulty.sim_control("stats")["cancelled_streams"] == before + 1
    assert elapsed < 1.0, f"upstream stream outlived the client by {elapsed:.3f} s"


def test_connection_refused_is_503(tmp_path: Path, dialect: str) -> None:
    gateway = start_stack(
        tmp_path, {"CURSORGATE_UPSTREAM_URL": f"http://127.0.0.1:{free_port()}"}, dialect=dialect
    )
    try:
        response = call(gateway, "anyone there?")
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "upstream_unavailable"
    finally:
        gateway.stop()


def test_rejected_token_disables_account(tmp_path: Path, dialect: str) -> None:
    gateway = start_stack(tmp_path, FAST_TIMEOUTS, dialect=dialect)
    try:
        gateway.sim_control("tokens", {"token": gateway.token, "reject": True})
        first = call(gateway, "who am I")
        assert first.status_code == 502 and first.json()["error"]["code"] == "upstream_auth"
        # The account is now disabled: no account is left to serve the model.
        second = call(gateway, "again")
        assert second.status_code == 503 and second.json()["error"]["code"] == "no_account_available"
        assert gateway.token not in gateway.logs()
    finally:
        gateway.stop()


def test_transient_unavailable_is_retried_on_the_only_account(tmp_path: Path, dialect: str) -> None:
    gateway = start_stack(tmp_path, FAST_TIMEOUTS, dialect=dialect)
    try:
        gateway.sim_control("tokens", {"token": gateway.token, "fail_next": 2})
        response = call(gateway, "flaky link")
        assert response.status_code == 200, response.text
        assert "flaky link" in response.json()["choices"][0]["message"]["content"]
        assert len(gateway.chat_requests()) == 3  # two 503s, then the answer

        gateway.sim_control("tokens", {"token": gateway.token, "fail_next": 5})
        failed = call(gateway, "still flaky")
        assert failed.status_code == 503
        assert failed.json()["error"]["code"] == "upstream_unavailable"
    finally:
        gateway.stop()
