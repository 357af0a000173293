"""Against the real Cursor, once per upstream dialect: one streamed completion and one tool call.
Runs only with CURSOR_TOKEN (`make live-test`); the summary says which dialects worked."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.procs import Proc, free_port

pytestmark = pytest.mark.live


@pytest.fixture(params=["inference", "agent", "legacy", "auto"])
def live_gateway(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    if not os.environ.get("CURSOR_TOKEN"):
        pytest.skip("CURSOR_TOKEN is not set: the live smoke test needs a real Cursor token")
    grpc_port, http_port = free_port(), free_port()
    env = {
        **os.environ,
        "CURSORGATE_GRPC_PORT": str(grpc_port),
        "CURSORGATE_HTTP_PORT": str(http_port),
        "CURSORGATE_LICENSES": "sk-live-test",
        "CURSORGATE_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'live.db'}",
        "CURSORGATE_UPSTREAM_DIALECT": request.param,
    }
    env.pop("CURSORGATE_UPSTREAM_URL", None)
    procs = [
        Proc("core", "core", grpc_port, env, tmp_path / "core.log"),
        Proc("facade", "facade", http_port, env, tmp_path / "facade.log"),
    ]
    try:
        for proc in procs:
            proc.start()
        yield f"http://127.0.0.1:{http_port}/cursor/v1"
    finally:
        for proc in reversed(procs):
            proc.stop()


def test_live_streamed_completion(live_gateway: str) -> None:
    client = openai.OpenAI(base_url=live_gateway, api_key="sk-live-test", max_retries=0, timeout=120)
    model = os.environ.get("CURSORGATE_LIVE_MODEL", "claude-4.5-sonnet")
    stream = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Reply with the single word: pong"}], stream=True
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert "pong" in text.lower()


def test_live_tool_call(live_gateway: str) -> None:
    client = openai.OpenAI(base_url=live_gateway, api_key="sk-live-test", max_retries=0, timeout=120)
    model = os.environ.get("CURSORGATE_LIVE_MODEL", "claude-4.5-sonnet")
    tool: Any = {
        "type": "function",
        "function": {
            "name": "get_time",
            "description": "Current time in a timezone",
            "parameters": {"type": "object", "properties": {"tz": {"type": "string"}}, "required": ["tz"]},
        },
    }
    reply = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "What time is it in Europe/Paris? Use the tool."}],
        tools=[tool],
        tool_choice="required",
    )
    calls = reply.choices[0].message.tool_calls or []
    assert calls and calls[0].function.name == "get_time"  # type: ignore[union-attr]
