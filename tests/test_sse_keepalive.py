"""SSE keep-alives: while the model is silent, comment lines keep proxies from closing the stream;
clients skip them. Real processes, the simulator's `first_ms=` holds the first frame back."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import openai
import pytest

from tests.procs import Stack, start_stack

MODEL = "claude-4.5-sonnet"
KEEPALIVE_S = 0.5


@pytest.fixture(scope="module")
def quick_keepalive(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = start_stack(
        tmp_path_factory.mktemp("keepalive"), {"CURSORGATE_SSE_KEEPALIVE_S": str(KEEPALIVE_S)}
    )
    yield stack
    stack.stop()


def raw_stream(stack: Stack, content: str) -> tuple[int, list[tuple[float, str]]]:
    body = {"model": MODEL, "stream": True, "messages": [{"role": "user", "content": content}]}
    headers = {"authorization": f"Bearer {stack.license}"}
    started = time.monotonic()
    with httpx.stream(
        "POST", f"{stack.base_url}/chat/completions", json=body, headers=headers, timeout=30
    ) as r:
        lines = [(time.monotonic() - started, line) for line in r.iter_lines() if line]
        return r.status_code, lines


def test_comments_go_out_while_the_model_is_silent(quick_keepalive: Stack) -> None:
    status, lines = raw_stream(quick_keepalive, "think first\nsim: first_ms=2000 chunks=3")
    assert status == 200
    first_data = next(i for i, (_, line) in enumerate(lines) if line.startswith("data:"))
    before = [line for _, line in lines[:first_data]]
    # 2 s of silence at one comment per 0.5 s: at least 2 (3 or 4 expected), and nothing else.
    assert len(before) >= 2
    assert set(before) == {": keep-alive"}
    # Sent while waiting, not all at the end: the first one well before the first chunk.
    assert lines[0][0] < lines[first_data][0] - 0.8
    assert lines[-1][1] == "data: [DONE]"
    # None once tokens flow faster than the interval.
    assert ": keep-alive" not in [line for _, line in lines[first_data:]]


def test_sdk_skips_the_comments(quick_keepalive: Stack) -> None:
    client = openai.OpenAI(base_url=quick_keepalive.base_url, api_key=quick_keepalive.license, max_retries=0)
    chunks = list(
        client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "quiet marker-5d1e\nsim: first_ms=1500"}],
            stream=True,
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "quiet marker-5d1e" in text
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_a_call_that_fails_at_once_keeps_its_status(quick_keepalive: Stack) -> None:
    """Within the first interval the facade still waits for core, so errors keep their HTTP status."""
    wrong = {"model": "no-such-model", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    response = httpx.post(
        f"{quick_keepalive.base_url}/chat/completions",
        json=wrong,
        headers={"authorization": f"Bearer {quick_keepalive.license}"},
        timeout=30,
    )
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "model_not_found"


def test_keepalive_zero_sends_none(tmp_path_factory: pytest.TempPathFactory) -> None:
    stack = start_stack(tmp_path_factory.mktemp("no-keepalive"), {"CURSORGATE_SSE_KEEPALIVE_S": "0"})
    try:
        status, lines = raw_stream(stack, "think\nsim: first_ms=1200 chunks=2")
        assert status == 200
        assert lines[0][1].startswith("data:")
        assert not [line for _, line in lines if line.startswith(":")]
    finally:
        stack.stop()


def test_leaving_while_only_keepalives_flowed_closes_upstream(quick_keepalive: Stack) -> None:
    """The client hangs up after headers and a keep-alive, before the model's first frame: the
    core call and the upstream stream are cancelled, not left to finish."""
    body = {
        "model": MODEL,
        "stream": True,
        "messages": [{"role": "user", "content": "bye\nsim: first_ms=4000"}],
    }
    headers = {"authorization": f"Bearer {quick_keepalive.license}"}
    before = quick_keepalive.sim_control("stats")["cancelled_streams"]
    with httpx.stream(
        "POST", f"{quick_keepalive.base_url}/chat/completions", json=body, headers=headers, timeout=30
    ) as r:
        assert r.status_code == 200
        assert next(line for line in r.iter_lines() if line) == ": keep-alive"
    deadline = time.monotonic() + 3  # well before the first frame (4 s) would have ended it
    while quick_keepalive.sim_control("stats")["open_streams"] and time.monotonic() < deadline:
        time.sleep(0.05)
    stats = quick_keepalive.sim_control("stats")
    assert stats["open_streams"] == 0
    assert stats["cancelled_streams"] > before
