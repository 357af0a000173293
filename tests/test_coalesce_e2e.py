"""Coalescing through the real processes: a client that reads nothing until Cursor (the simulator)
has sent its whole answer gets it in fewer SSE events than there were upstream frames, with the
same text in the same order; a client that keeps up gets every frame as it came.

Backpressure by construction: the answer (6 MB of text) is larger than what the kernel can hold
between the facade and a client socket with a tiny receive buffer (at most tcp_wmem's 4 MiB here),
and the client reads nothing until the simulator has finished or stopped being read, so the
facade's writes block and what follows piles up in the gateway (core's and the facade's buffers)
and leaves merged.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import h11
import httpx
import pytest

from simulator.script import fixed_chunks
from tests.procs import Stack, start_stack

FRAMES = 3000
CHARS = 2000
# More than the socket buffers between facade and client can hold (tcp_wmem max 4 MiB + rcvbuf).
assert FRAMES * CHARS > 5 * 1024 * 1024
# The longest the client holds off reading when the gateway stops reading the simulator (its
# buffers full) before the simulator finishes; the merging does not depend on it.
HOLD_S = 10.0
PROMPT = f"coalesce\nsim: chunks={FRAMES} chunk_chars={CHARS}"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    gateway = start_stack(tmp_path_factory.mktemp("coalesce"), {"CURSORGATE_LOG_LEVEL": "WARNING"})
    yield gateway
    gateway.stop()


def stalled_read(stack: Stack, path: str, body: dict[str, object], headers: dict[str, str]) -> bytes:
    """POSTs, waits (not reading) until the simulator's stream ended or HOLD_S passed, then reads it all."""
    port = int(stack.root_url.rsplit(":", 1)[1])
    seen = len(stack.chat_requests())
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: a small window
    sock.connect(("127.0.0.1", port))
    conn = h11.Connection(h11.CLIENT)
    payload = json.dumps(body).encode()
    head = [
        ("host", f"127.0.0.1:{port}"),
        ("content-type", "application/json"),
        ("content-length", str(len(payload))),
        ("connection", "close"),
        *headers.items(),
    ]
    sock.sendall(conn.send(h11.Request(method="POST", target=path, headers=head)) or b"")
    sock.sendall(conn.send(h11.Data(data=payload)) or b"")
    sock.sendall(conn.send(h11.EndOfMessage()) or b"")
    deadline = time.monotonic() + 60
    opened_at: float | None = None
    while True:  # the upstream stream opens, then ends (or the gateway stops reading it)
        open_streams = stack.sim_control("stats")["open_streams"]
        if opened_at is None and len(stack.chat_requests()) > seen:
            opened_at = time.monotonic()
        if opened_at is not None and (open_streams == 0 or time.monotonic() > opened_at + HOLD_S):
            break
        assert time.monotonic() < deadline, "the simulator's stream never opened"
        time.sleep(0.05)
    data = bytearray()
    status = 0
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(sock.recv(65536))
        elif isinstance(event, h11.Response):
            status = event.status_code
        elif isinstance(event, h11.Data):
            data += event.data
        elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
            break
    sock.close()
    assert status == 200, bytes(data[:300])
    return bytes(data)


def chat_texts(raw: bytes) -> list[str]:
    out = []
    for line in raw.decode().split("\n"):
        if line.startswith("data: {"):
            choices = json.loads(line[6:]).get("choices") or ()
            if choices and choices[0]["delta"].get("content"):
                out.append(choices[0]["delta"]["content"])
    return out


def messages_texts(raw: bytes) -> list[str]:
    out = []
    for line in raw.decode().split("\n"):
        if line.startswith("data: {"):
            event = json.loads(line[6:])
            if event.get("type") == "content_block_delta" and event["delta"].get("type") == "text_delta":
                out.append(event["delta"]["text"])
    return out


EXPECTED = "".join(fixed_chunks(FRAMES, CHARS))  # what the simulator sends, frame by frame


def test_chat_completions_slow_reader_gets_merged_events(stack: Stack) -> None:
    body = {"model": "gpt-5.2", "stream": True, "messages": [{"role": "user", "content": PROMPT}]}
    raw = stalled_read(
        stack, "/cursor/v1/chat/completions", body, {"authorization": f"Bearer {stack.license}"}
    )
    texts = chat_texts(raw)
    assert "".join(texts) == EXPECTED
    assert len(texts) < FRAMES
    assert raw.rstrip().endswith(b"data: [DONE]")


def test_anthropic_messages_slow_reader_gets_merged_events(stack: Stack) -> None:
    body = {
        "model": "gpt-5.2",
        "stream": True,
        "max_tokens": 2_000_000,  # more than the answer: not cut short
        "messages": [{"role": "user", "content": PROMPT}],
    }
    headers = {"x-api-key": stack.license, "anthropic-version": "2023-06-01"}
    texts = messages_texts(stalled_read(stack, "/v1/messages", body, headers))
    assert "".join(texts) == EXPECTED
    assert len(texts) < FRAMES


def test_a_reader_that_keeps_up_gets_the_text_whole(stack: Stack) -> None:
    """The same stream read as it comes: same text (how many events it takes depends on load)."""
    body = {"model": "gpt-5.2", "stream": True, "messages": [{"role": "user", "content": PROMPT}]}
    headers = {"authorization": f"Bearer {stack.license}"}
    with httpx.stream(
        "POST", f"{stack.base_url}/chat/completions", json=body, headers=headers, timeout=60
    ) as r:
        raw = r.read()
    assert "".join(chat_texts(raw)) == EXPECTED
