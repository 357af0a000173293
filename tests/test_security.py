"""Security checks on the real stack: CORS, secrets absent from logs and answers, request limits.

The audited stack runs every process at DEBUG, serves normal traffic and error cases (a wrong
license, upstream faults, a Cursor token that upstream rejects), and then its log files, its
database and every answer it gave are searched for the license, the wrong key and the token.
"""

from __future__ import annotations

import base64
import io
import json
import secrets
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from core.api.validate import MAX_IMAGES, MAX_TOOL_SCHEMA_BYTES, validate_chat
from core.errors import GatewayError
from cursorgate.v1 import chat_pb2
from tests.procs import Stack, start_stack

LICENSE = f"sk-cg-audit-{secrets.token_hex(16)}"
WRONG_KEY = f"sk-cg-wrong-{secrets.token_hex(16)}"
ORIGIN = "https://app.example.test"
MAX_BODY = 256 * 1024


@pytest.fixture(scope="module")
def audited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, Path]]:
    tmp = tmp_path_factory.mktemp("audit")
    env = {
        "CURSORGATE_LOG_LEVEL": "DEBUG",
        "CURSORGATE_SIMULATOR_LOG_LEVEL": "debug",
        "CURSORGATE_CORS_ORIGINS": ORIGIN,
        "CURSORGATE_MAX_BODY_BYTES": str(MAX_BODY),
        "CURSORGATE_UPSTREAM_IDLE_TIMEOUT": "1",
    }
    gateway = start_stack(tmp, env, license=LICENSE)
    yield gateway, tmp
    gateway.stop()


def chat(
    stack: Stack, prompt: str, *, stream: bool = False, key: str | None = None, **extra: Any
) -> httpx.Response:
    body = {"model": "gpt-5.2", "messages": [{"role": "user", "content": prompt}], "stream": stream, **extra}
    key = stack.license if key is None else key
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.post(f"{stack.base_url}/chat/completions", json=body, headers=headers, timeout=30)


# --- CORS ---------------------------------------------------------------------------------


def preflight(stack: Stack, origin: str) -> httpx.Response:
    headers = {
        "Origin": origin,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type",
    }
    return httpx.options(f"{stack.base_url}/chat/completions", headers=headers, timeout=10)


def test_cors_off_by_default(stack: Stack) -> None:
    assert "access-control-allow-origin" not in preflight(stack, ORIGIN).headers
    response = httpx.get(
        f"{stack.base_url}/models",
        headers={"Origin": ORIGIN, "Authorization": f"Bearer {stack.license}"},
        timeout=10,
    )
    assert response.status_code == 200
    assert not any(name.startswith("access-control-") for name in response.headers)


def test_cors_on_for_configured_origins_only(audited: tuple[Stack, Path]) -> None:
    stack, _ = audited
    allowed = preflight(stack, ORIGIN)
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == ORIGIN
    assert "POST" in allowed.headers["access-control-allow-methods"]
    other = preflight(stack, "https://evil.example.test")
    assert "access-control-allow-origin" not in other.headers
    simple = httpx.get(
        f"{stack.base_url}/models",
        headers={"Origin": ORIGIN, "Authorization": f"Bearer {LICENSE}"},
        timeout=10,
    )
    assert simple.headers["access-control-allow-origin"] == ORIGIN
    # Error answers carry the header too, so browsers can read the OpenAI error body.
    denied = httpx.get(f"{stack.base_url}/models", headers={"Origin": ORIGIN}, timeout=10)
    assert denied.status_code == 401 and denied.headers["access-control-allow-origin"] == ORIGIN


# --- limits -------------------------------------------------------------------------------


def test_body_limit_is_413(audited: tuple[Stack, Path]) -> None:
    stack, _ = audited
    response = chat(stack, "x" * (MAX_BODY + 1))
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"


def tiny_png() -> str:
    out = io.BytesIO()
    Image.new("RGB", (1, 1)).save(out, format="PNG")
    return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode()


def test_image_count_limit(audited: tuple[Stack, Path]) -> None:
    stack, _ = audited
    image = {"type": "image_url", "image_url": {"url": tiny_png()}}
    ok = chat(stack, "", messages=[{"role": "user", "content": [image] * MAX_IMAGES}])
    assert ok.status_code == 200, ok.text
    response = chat(stack, "", messages=[{"role": "user", "content": [image] * (MAX_IMAGES + 1)}])
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "messages[0].content"


def test_tool_schema_limits(audited: tuple[Stack, Path]) -> None:
    stack, _ = audited
    big = {"type": "object", "description": "x" * MAX_TOOL_SCHEMA_BYTES}
    tools = [{"type": "function", "function": {"name": "f", "parameters": big}}]
    response = chat(stack, "hi", tools=tools)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "tools[0].function.parameters"
    deep: Any = 1
    for _ in range(40):
        deep = {"a": deep}
    tools = [{"type": "function", "function": {"name": "f", "parameters": deep}}]
    response = chat(stack, "hi", tools=tools)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "tools[0].function.parameters"


@pytest.mark.parametrize(
    "raw_value",
    ["NaN", "Infinity", "1" + "0" * 400, '"\\ud800"'],
)
def test_unrepresentable_json_is_400(audited: tuple[Stack, Path], raw_value: str) -> None:
    """Found by fuzzing: these were 500s (protobuf cannot carry them)."""
    stack, _ = audited
    tools = '[{"type": "function", "function": {"name": "f", "parameters": {"x": ' + raw_value + "}}}]"
    raw = '{"model": "gpt-5.2", "messages": [{"role": "user", "content": "hi"}], "tools": ' + tools + "}"
    response = httpx.post(
        f"{stack.base_url}/chat/completions",
        content=raw,
        headers={"Authorization": f"Bearer {LICENSE}", "content-type": "application/json"},
        timeout=10,
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == "tools[0].function.parameters"


@pytest.mark.parametrize("field", ["model", "user", "content", "name"])
def test_unpaired_surrogate_is_400(audited: tuple[Stack, Path], field: str) -> None:
    """Found by fuzzing: JSON's "\\ud800" is a str Python holds but protobuf refuses (was a 500)."""
    stack, _ = audited
    message: dict[str, Any] = {"role": "user", "content": "hi"}
    body: dict[str, Any] = {"model": "gpt-5.2", "messages": [message]}
    if field in ("content", "name"):
        message[field] = "a\ud800"
    else:
        body[field] = "a\ud800"
    response = httpx.post(
        f"{stack.base_url}/chat/completions",
        content=json.dumps(body),  # ensure_ascii spells the surrogate as an escape
        headers={"Authorization": f"Bearer {LICENSE}", "content-type": "application/json"},
        timeout=10,
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == (
        "messages[0]." + field if field in ("content", "name") else field
    )


def grpc_request() -> chat_pb2.ChatRequest:
    request = chat_pb2.ChatRequest(model="gpt-5.2")
    request.messages.add(role=chat_pb2.ROLE_USER).content.add(text="hi")
    return request


def test_core_refuses_non_finite_schema_numbers() -> None:
    """gRPC callers can send NaN in a Struct; JSON to Cursor cannot carry it."""
    request = grpc_request()
    request.tools.add(name="f").parameters.update({"a": {"b": [1, float("nan")]}})
    with pytest.raises(GatewayError) as caught:
        validate_chat(request)
    assert caught.value.param == "tools[0].function.parameters"


def test_decompression_bomb_image_is_400(audited: tuple[Stack, Path]) -> None:
    stack, _ = audited

    # A PNG whose header claims 30000x30000 pixels: over Pillow's bomb limit, a few bytes on the wire.
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 30000, 30000, 8, 2, 0, 0, 0)
    png = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0"))
        + chunk(b"IEND", b"")
    )
    url = "data:image/png;base64," + base64.b64encode(png).decode()
    content = [{"type": "text", "text": "what is it?"}, {"type": "image_url", "image_url": {"url": url}}]
    asked_before = len(stack.chat_requests())
    response = chat(stack, "", messages=[{"role": "user", "content": content}])
    assert response.status_code == 400, response.text
    # The caller learns which part was refused and why, in OpenAI's shape; nothing reached Cursor.
    assert response.json() == {
        "error": {
            "message": "The image could not be decoded.",
            "type": "invalid_request_error",
            "param": "messages[0].content[1].image_url",
            "code": None,
        }
    }
    assert len(stack.chat_requests()) == asked_before


# --- secrets in logs and answers ----------------------------------------------------------


def test_secrets_absent_from_logs_and_answers(audited: tuple[Stack, Path]) -> None:
    """Runs last: it rejects the stack's Cursor token, which disables the only account."""
    stack, tmp = audited
    answers: list[httpx.Response] = [
        chat(stack, "hello there"),
        chat(stack, "stream please", stream=True),
        chat(
            stack,
            "call get_weather",
            tools=[
                {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
            ],
        ),
        httpx.get(f"{stack.base_url}/models", headers={"Authorization": f"Bearer {LICENSE}"}, timeout=10),
        chat(stack, "intruder", key=WRONG_KEY),
        chat(stack, "intruder", key=WRONG_KEY, stream=True),
        chat(stack, "no key", key=""),
        httpx.get(f"{stack.base_url}/models", headers={"Authorization": f"Bearer {WRONG_KEY}"}, timeout=10),
        httpx.get(f"{stack.base_url}/models", headers={"Authorization": WRONG_KEY}, timeout=10),
        chat(stack, "x", messages="not a list"),
        chat(stack, "boom\nsim: error=internal"),
        chat(stack, "boom\nsim: chunks=4 break=1 after=2", stream=True),
        chat(stack, "boom\nsim: chunks=4 malformed=1 after=2", stream=True),
        chat(stack, "slow\nsim: chunks=4 stall=1 after=2", stream=True),
    ]
    # The Anthropic surface: its key header, its DEBUG logging of headers and ignored fields.
    messages_url = f"{stack.root_url}/cursor/v1/messages?beta=true"
    message: dict[str, Any] = {
        "model": "claude-4.5-sonnet",
        "max_tokens": 50,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi", "cache_control": {}}]}],
    }
    anthropic_answers = [
        httpx.post(messages_url, json=message, headers={"x-api-key": LICENSE}, timeout=30),
        httpx.post(messages_url, json=message | {"stream": True}, headers={"x-api-key": LICENSE}, timeout=30),
        httpx.post(messages_url, json=message, headers={"x-api-key": WRONG_KEY}, timeout=30),
        httpx.post(
            f"{stack.root_url}/v1/messages/count_tokens",
            json=message,
            headers={"x-api-key": WRONG_KEY},
            timeout=30,
        ),
    ]
    assert [a.status_code for a in anthropic_answers] == [200, 200, 401, 401]
    stack.sim_control("tokens", {"token": stack.token, "reject": True})
    answers += anthropic_answers
    answers.append(chat(stack, "who am I"))
    answers.append(chat(stack, "again", stream=True))
    statuses = [a.status_code for a in answers]
    assert statuses[:4] == [200, 200, 200, 200]
    assert statuses[4:10] == [401, 401, 401, 401, 401, 400]
    assert statuses[-2] == 502 and answers[-2].json()["error"]["code"] == "upstream_auth"
    assert statuses[-1] == 503

    payload = stack.token.split(".")[1]  # the account's identity, the token's middle part
    secret_values = {
        "license": LICENSE,
        "wrong key": WRONG_KEY,
        "token": stack.token,
        "token payload": payload,
    }
    for answer in answers:
        for name, value in secret_values.items():
            assert value not in answer.text, f"{name} in an answer: {answer.text[:200]}"
            assert all(value not in v for v in answer.headers.values()), f"{name} in a header"

    stack.stop()  # flush and close every log
    logs = {p.name: p.read_text(errors="replace") for p in tmp.glob("*.log")}
    assert set(logs) == {"simulator.log", "core.log", "facade.log"}
    assert sum(len(text) for text in logs.values()) > 1000, "the run logged (almost) nothing"
    for log_name, text in logs.items():
        for name, value in secret_values.items():
            assert value not in text, f"{name} in {log_name}"
    # Licenses are kept hashed at rest.
    for db in tmp.glob("cursorgate.db*"):
        assert LICENSE.encode() not in db.read_bytes(), f"license in {db.name}"
