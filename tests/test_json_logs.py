"""CURSORGATE_LOG_FORMAT=json: every line the facade and core log is a JSON object, and lines
logged while serving a request carry its id (the caller's X-Request-ID, else the gateway's)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.procs import Proc, Stack, start_stack

MODEL = "claude-4.5-sonnet"


@pytest.fixture(scope="module")
def json_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = start_stack(
        tmp_path_factory.mktemp("json-logs"),
        # DEBUG: every line the code can write, secrets checked at the most verbose level too.
        {
            "CURSORGATE_LOG_FORMAT": "json",
            "CURSORGATE_UPSTREAM_ATTEMPTS": "2",
            "CURSORGATE_LOG_LEVEL": "DEBUG",
        },
    )
    yield stack
    stack.stop()


def records(proc: Proc) -> list[dict[str, Any]]:
    lines = [line for line in proc.log.read_text().splitlines() if line.strip()]
    parsed = []
    for line in lines:
        record = json.loads(line)  # fails the test on any line that is not JSON
        assert {"time", "level", "logger", "message", "request_id"} <= set(record), line
        parsed.append(record)
    return parsed


def post(stack: Stack, content: str, request_id: str | None = None) -> httpx.Response:
    headers = {"authorization": f"Bearer {stack.license}"}
    if request_id:
        headers["x-request-id"] = request_id
    return httpx.post(
        f"{stack.base_url}/chat/completions",
        json={"model": MODEL, "messages": [{"role": "user", "content": content}]},
        headers=headers,
        timeout=30,
    )


def test_core_lines_carry_the_callers_request_id(json_stack: Stack) -> None:
    response = post(json_stack, "fail\nsim: error=unavailable", "rid-json-4242")
    assert response.status_code == 503
    mine = [r for r in records(json_stack.core) if r["request_id"] == "rid-json-4242"]
    loggers = {r["logger"] for r in mine}
    # The failover warning (router) and the failed call (chat service), both under the caller's id.
    assert {"cursorgate.router", "cursorgate.chat"} <= loggers
    assert any("failing over" in r["message"] for r in mine)
    assert any(r["level"] == "WARNING" for r in mine)


def test_without_a_header_the_gateways_id_is_used(json_stack: Stack) -> None:
    response = post(json_stack, "fail again\nsim: error=unavailable")
    assert response.status_code == 503
    failovers = [r for r in records(json_stack.core) if "failing over" in r["message"]]
    assert any(r["request_id"].startswith("chatcmpl-") for r in failovers)


def test_facade_lines_carry_it_too_and_no_secret_is_logged(json_stack: Stack) -> None:
    # With core gone the facade logs the bare gRPC failure itself, under the request's id (at
    # DEBUG: core being away is logged once, by the channel's watcher, not once per request).
    json_stack.core.stop()
    try:
        response = post(json_stack, "anyone there?", "rid-json-7777")
        assert response.status_code == 503
        mine = [r for r in records(json_stack.facade) if r["request_id"] == "rid-json-7777"]
        assert any("without ErrorInfo" in r["message"] for r in mine)
        # Startup lines (uvicorn's included) are JSON too, outside any request.
        assert any(
            r["logger"].startswith("uvicorn") and r["request_id"] is None for r in records(json_stack.facade)
        )
    finally:
        json_stack.core.start()
    text = json_stack.facade.log.read_text() + json_stack.core.log.read_text()
    assert json_stack.license not in text
    assert json_stack.token not in text
