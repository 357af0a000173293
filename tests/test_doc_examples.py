"""The service document's two curl examples (shared/seed/cursor-api-doc.md), run as written:
only host, port and license filled in. They name retired models (claude-3.7-sonnet-thinking,
gpt-4o), so they pass through the default aliases."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.procs import Stack, start_stack

ADMIN_KEY = "adm-doc-examples-0123456789"

# Copied verbatim from the document's "对话接口" code group, placeholders included.
STREAMING_EXAMPLE = """curl -X POST 'http://<你的IP>:<你的端口>/cursor/v1/chat/completions' \\
--header 'Content-Type: application/json' \\
--header 'Authorization: Bearer <你的许可证>' \\
--data '{
    "messages": [
        {
            "role": "user",
            "content": "你是什么模型"
        }
    ],
    "model": "claude-3.7-sonnet-thinking",
    "stream": true
}'"""

FUNCTION_CALLING_EXAMPLE = """curl -X POST 'http://<你的IP>:<你的端口>/cursor/v1/chat/completions' \\
--header 'Content-Type: application/json' \\
--header 'Authorization: Bearer <你的许可证>' \\
--data '{
    "messages": [
        {
            "role": "user",
            "content": "What is the weather like in Boston today?"
        }
    ],
    "tools": [
        {
            "type": "function",
            "function": {
                "name": "get_current_weather",
                "description": "Get the current weather in a given location",
                "parameters": {
                    "type": "object",
                    "properties": {
                        "location": {
                            "type": "string",
                            "description": "The city and state, e.g. San Francisco, CA"
                        },
                        "unit": {
                            "type": "string",
                            "enum": [
                                "celsius",
                                "fahrenheit"
                            ]
                        }
                    },
                    "required": [
                        "location"
                    ]
                }
            }
        }
    ],
    "model": "gpt-4o",
    "stream": false
}'"""


@pytest.fixture(scope="module")
def doc_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    gateway = start_stack(tmp_path_factory.mktemp("doc"), {"CURSORGATE_ADMIN_KEY": ADMIN_KEY})
    yield gateway
    gateway.stop()


def filled_in(example: str, stack: Stack) -> list[str]:
    """The command's argv, as a shell would split it, with the three placeholders filled in."""
    text = (
        example.replace("<你的IP>", "127.0.0.1")
        .replace("<你的端口>", str(stack.facade.port))
        .replace("<你的许可证>", stack.license)
    )
    return shlex.split(text.replace("\\\n", " "))


def run_with_httpx(argv: list[str]) -> httpx.Response:
    """curl's -X / --header / --data / URL arguments, sent as curl sends them."""
    assert argv[0] == "curl"
    method, url, headers, data = "GET", "", {}, b""
    args = iter(argv[1:])
    for arg in args:
        if arg == "-X":
            method = next(args)
        elif arg == "--header":
            name, _, value = next(args).partition(":")
            headers[name.strip()] = value.strip()
        elif arg == "--data":
            data = next(args).encode()
        else:
            url = arg
    return httpx.request(method, url, headers=headers, content=data, timeout=60)


def sse_events(body: str) -> list[Any]:
    payloads = [line.removeprefix("data: ") for line in body.splitlines() if line.startswith("data: ")]
    assert payloads[-1] == "[DONE]", body[-300:]
    return [json.loads(p) for p in payloads[:-1]]


def check_streaming_answer(body: str) -> None:
    chunks = sse_events(body)
    assert all(c["model"] == "claude-3.7-sonnet-thinking" for c in chunks)
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    reasoning = "".join(d.get("reasoning_content", "") for d in deltas)
    content = "".join(d.get("content") or "" for d in deltas)
    assert reasoning.strip(), "no reasoning_content streamed"
    assert "你是什么模型" in content
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


def check_function_call_answer(answer: dict[str, Any]) -> None:
    assert answer["object"] == "chat.completion" and answer["model"] == "gpt-4o"
    choice = answer["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    (call,) = choice["message"]["tool_calls"]
    assert call["type"] == "function" and call["function"]["name"] == "get_current_weather"
    assert "location" in json.loads(call["function"]["arguments"])


def upstream_model(stack: Stack) -> str:
    return str(stack.last_view()["model"])


def test_streaming_example_streams_reasoning_through_the_default_alias(doc_stack: Stack) -> None:
    response = run_with_httpx(filled_in(STREAMING_EXAMPLE, doc_stack))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    check_streaming_answer(response.text)
    assert upstream_model(doc_stack) == "claude-4.5-sonnet-thinking"
    entry = doc_stack.admin("GET", "/requests?limit=1").json()["requests"][0]
    assert (entry["model"], entry["requested_model"], entry["outcome"]) == (
        "claude-4.5-sonnet-thinking",
        "claude-3.7-sonnet-thinking",
        "ok",
    )


def test_function_calling_example_calls_the_tool_through_the_default_alias(doc_stack: Stack) -> None:
    response = run_with_httpx(filled_in(FUNCTION_CALLING_EXAMPLE, doc_stack))
    assert response.status_code == 200, response.text
    check_function_call_answer(response.json())
    assert upstream_model(doc_stack) == "gpt-5.2"


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_both_examples_with_curl_itself(doc_stack: Stack) -> None:
    streamed = subprocess.run(
        filled_in(STREAMING_EXAMPLE, doc_stack), capture_output=True, timeout=60, check=True
    )
    check_streaming_answer(streamed.stdout.decode())
    called = subprocess.run(
        filled_in(FUNCTION_CALLING_EXAMPLE, doc_stack), capture_output=True, timeout=60, check=True
    )
    check_function_call_answer(json.loads(called.stdout))


def test_examples_are_the_documents(doc_stack: Stack) -> None:
    """When the document is at hand (a checkout next to shared/), the copies above match it."""
    found = [
        p / "shared" / "seed" / "cursor-api-doc.md"
        for p in Path(__file__).resolve().parents
        if (p / "shared" / "seed" / "cursor-api-doc.md").exists()
    ]
    if not found:
        pytest.skip("shared/seed/cursor-api-doc.md is not next to this checkout")
    text = found[0].read_text()
    assert STREAMING_EXAMPLE in text and FUNCTION_CALLING_EXAMPLE in text
