"""Regression (issue 13): at overload, calls failed with a bare gRPC CANCELLED between facade and
core. Root cause: gRPC cancels a call that waits more than `grpc.server_max_unrequested_time_in_server`
(default 30 s) before the application requests it, and grpc.aio requests calls one at a time
from its event loop, which falls behind when the loop is saturated. Core's server options now
bound a queued call by the request timeout instead (core/server.py: server_options).

Reproduced here by construction: the server's event loop is blocked (as by saturation) for
longer than gRPC's default, while a call arrives. Slow by nature (over 30 s): the default
itself is the subject.
"""

from __future__ import annotations

import asyncio
import threading
import time

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from core.config import CoreSettings
from core.server import server_options

# Longer than gRPC's default unrequested time (30 s), with a margin.
BLOCK_S = 34.0


class ServerThread(threading.Thread):
    """A grpc.aio server on its own event loop, which the test can block."""

    def __init__(self, options: list[tuple[str, int]]) -> None:
        super().__init__(daemon=True)
        self.options = options
        self.port = 0
        self.ready = threading.Event()
        self.loop = asyncio.new_event_loop()
        self.stopping: asyncio.Event | None = None

    def run(self) -> None:
        self.loop.run_until_complete(self._serve())

    async def _serve(self) -> None:
        server = grpc.aio.server(options=self.options)
        servicer = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
        self.port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        await servicer.set("", health_pb2.HealthCheckResponse.SERVING)
        self.stopping = asyncio.Event()
        self.ready.set()
        await self.stopping.wait()
        await server.stop(0)

    def block(self, seconds: float) -> None:
        """Hold the server's loop, as a saturated loop does, without stopping gRPC's own threads."""
        self.loop.call_soon_threadsafe(time.sleep, seconds)

    def stop(self) -> None:
        if self.stopping is not None:
            self.loop.call_soon_threadsafe(self.stopping.set)
        self.join(timeout=10)


@pytest.mark.timeout(120)
def test_a_call_queued_behind_a_busy_loop_is_served_not_cancelled() -> None:
    server = ServerThread(server_options(CoreSettings(request_timeout=600)))
    server.start()
    assert server.ready.wait(10)

    async def calls() -> list[object]:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            await stub.Check(health_pb2.HealthCheckRequest(), timeout=10)  # the link is up
            server.block(BLOCK_S)
            await asyncio.sleep(0.5)  # the loop is held now
            # The first call takes the one request grpc.aio keeps outstanding; the others wait
            # in gRPC's queue for the loop to request them.
            pending = [stub.Check(health_pb2.HealthCheckRequest(), timeout=BLOCK_S + 30) for _ in range(5)]
            return list(await asyncio.gather(*pending, return_exceptions=True))

    try:
        results = asyncio.run(calls())
    finally:
        server.stop()
    # Before the fix: the first was served, the other four failed CANCELLED after 30 s in the queue.
    codes = [r.code() if isinstance(r, grpc.aio.AioRpcError) else r for r in results]
    served = [r for r in results if isinstance(r, health_pb2.HealthCheckResponse)]
    assert len(served) == len(results), codes
    assert all(r.status == health_pb2.HealthCheckResponse.SERVING for r in served)
