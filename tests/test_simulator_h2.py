"""The simulator's HTTP/2 server with more than 1,000 streams open on one connection.

Regression: hypercorn's send scheduler held at most 999 streams while it advertised 10,000, and
the 1,000th killed the connection's read loop, so `make load` (1,000 streams on core's one
connection to the simulator) stalled every stream (see simulator/h2patches.py). Spoken with the
`h2` library over a socket, so that the test opens the streams without a client that would
queue them.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import DataReceived, RemoteSettingsChanged, ResponseReceived, StreamEnded

from tests.procs import Proc, free_port

OPEN_STREAMS = 1100
TIMEOUT_S = 15.0


@pytest.fixture(scope="module")
def port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    tmp: Path = tmp_path_factory.mktemp("simh2")
    port = free_port()
    env = {**os.environ, "CURSORGATE_ENV_FILE": str(tmp / "none.env"), "CURSORGATE_SIMULATOR_PORT": str(port)}
    sim = Proc("simulator", "simulator", port, env, tmp / "simulator.log")
    sim.start()
    yield port
    sim.stop()


def _headers(port: int, method: str, path: str) -> list[tuple[str, str]]:
    return [
        (":method", method),
        (":scheme", "http"),
        (":authority", f"127.0.0.1:{port}"),
        (":path", path),
        ("content-type", "application/connect+proto"),
        ("connect-protocol-version", "1"),
    ]


def test_a_connection_with_1100_open_streams_still_answers(port: int) -> None:
    conn = H2Connection(H2Configuration(client_side=True, header_encoding=None))
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT_S) as sock:
        conn.initiate_connection()
        sock.sendall(conn.data_to_send())
        while not any(isinstance(e, RemoteSettingsChanged) for e in conn.receive_data(sock.recv(65536))):
            pass
        # Agent Runs whose request stays open and empty: each waits for its run request.
        for _ in range(OPEN_STREAMS):
            conn.send_headers(
                conn.get_next_available_stream_id(), _headers(port, "POST", "/agent.v1.AgentService/Run")
            )
        probe = conn.get_next_available_stream_id()
        conn.send_headers(probe, _headers(port, "GET", "/__sim/stats"), end_stream=True)
        sock.sendall(conn.data_to_send())

        status, body, ended = "", b"", False
        deadline = time.monotonic() + TIMEOUT_S
        while not ended and time.monotonic() < deadline:
            data = sock.recv(65536)  # a stalled connection ends the test here, with a timeout
            assert data, "the simulator closed the connection"
            for event in conn.receive_data(data):
                if isinstance(event, ResponseReceived) and event.stream_id == probe:
                    status = dict(event.headers)[b":status"].decode()
                elif isinstance(event, DataReceived) and event.stream_id == probe:
                    body += event.data
                elif isinstance(event, StreamEnded) and event.stream_id == probe:
                    ended = True
            sock.sendall(conn.data_to_send())
    assert (status, ended) == ("200", True)
    assert "open_streams" in json.loads(body)
