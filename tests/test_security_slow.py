"""Issue 14, finding 9: slow clients (slowloris) cannot hold the facade's connections forever,
and the number of connections is capped.

Raw sockets, because HTTP clients will not send half a request.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator

import pytest

from tests.procs import Stack, start_stack

HEADER_TIMEOUT = 1.0
BODY_TIMEOUT = 1.5
CAP = 6


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    env = {
        "CURSORGATE_HEADER_TIMEOUT": str(HEADER_TIMEOUT),
        "CURSORGATE_BODY_TIMEOUT": str(BODY_TIMEOUT),
        "CURSORGATE_MAX_CONNECTIONS": str(CAP),
    }
    stack = start_stack(tmp_path_factory.mktemp("slowloris"), env)
    yield stack
    stack.stop()


def connect(stack: Stack) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", stack.facade.port), timeout=10)
    sock.settimeout(10)
    return sock


def read_all(sock: socket.socket) -> bytes:
    """Everything until the server closes (or 10 s pass: then the test fails on the timeout)."""
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def test_unfinished_headers_are_cut_off(gateway: Stack) -> None:
    with contextlib.closing(connect(gateway)) as sock:
        started = time.monotonic()
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # no blank line: never complete
        assert read_all(sock) == b""
        assert time.monotonic() - started < HEADER_TIMEOUT + 3


def trickle(sock: socket.socket, data: bytes, pause: float) -> bool:
    """Sends one byte per pause; False as soon as the server has closed the connection."""
    try:
        for byte in data:
            sock.send(bytes([byte]))
            time.sleep(pause)
    except OSError:
        return False
    return True


def test_trickled_headers_are_cut_off(gateway: Stack) -> None:
    with contextlib.closing(connect(gateway)) as sock:
        started = time.monotonic()
        # 10 s of header bytes at 0.1 s each: the server must close long before the end.
        assert not trickle(sock, b"GET /healthz HTTP/1.1\r\nHost: " + b"x" * 100, 0.1)
        assert time.monotonic() - started < HEADER_TIMEOUT + 3


def test_unfinished_body_is_408(gateway: Stack) -> None:
    with contextlib.closing(connect(gateway)) as sock:
        started = time.monotonic()
        sock.sendall(
            b"POST /cursor/v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
            + f"Authorization: Bearer {gateway.license}\r\n".encode()
            + b'Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"model": '
        )
        answer = b""
        while b"}}" not in answer and (chunk := sock.recv(65536)):
            answer += chunk
        assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
        assert b"request_timeout" in answer
        assert time.monotonic() - started < BODY_TIMEOUT + 3


def healthz(sock: socket.socket) -> bytes:
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    return sock.recv(65536)


def test_connections_are_capped(gateway: Stack) -> None:
    idle: list[socket.socket] = []
    try:
        # uvicorn counts the connection being served: CAP - 1 others may be open.
        for _ in range(CAP - 1):
            idle.append(connect(gateway))
            assert healthz(idle[-1]).startswith(b"HTTP/1.1 200")  # kept alive afterwards
        idle.append(connect(gateway))
        assert healthz(idle[-1]).startswith(b"HTTP/1.1 503")
    finally:
        for sock in idle:
            sock.close()
    time.sleep(0.5)
    with contextlib.closing(connect(gateway)) as sock:
        assert healthz(sock).startswith(b"HTTP/1.1 200")
