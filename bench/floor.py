"""`make bench-floor`: what the libraries the gateway is built on cost per streamed frame on this
machine, before any code of ours runs, next to issue 13's budget of 0.10 CPU-s per 1,000 frames.

A frame crossing the gateway is, at least: one gRPC message sent by core (grpc.aio server) and
received by the facade (grpc.aio client), and one SSE event written by the facade (FastAPI's
StreamingResponse on uvicorn, as facade/sse.py does). This script times those alone, with the same
load as `make bench`'s paced phase (N streams, a 20-character frame every `--delay-ms`):

  * grpc: a grpc.aio server streaming `cursorgate.v1.ChatEvent` text deltas to a grpc.aio client,
          each in its own process; CPU of both;
  * sse:  a FastAPI app on uvicorn streaming the same frames as SSE events to an httpx reader in
          another process; CPU of the server only.

No upstream read, no protobuf <-> JSON translation, no authentication: the sum is a lower bound for
core + facade. When it alone exceeds the budget, no change to our code can meet it on this stack
(grpcio asyncio and FastAPI on uvicorn, which the project's guide prescribes).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import psutil

from bench.stats import cpu_seconds

BUDGET_CPU_S_PER_1K = 0.10
FRAME = "x" * 20


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- the processes -----------------------------------------------------------------------------


async def _grpc_server(port: int, frames: int, delay: float, announce: bool = True) -> Any:
    import grpc

    from cursorgate.v1 import chat_pb2, chat_pb2_grpc

    class Chat(chat_pb2_grpc.ChatServiceServicer):
        async def StreamChat(
            self, request: chat_pb2.ChatRequest, context: grpc.aio.ServicerContext[Any, Any]
        ) -> AsyncIterator[chat_pb2.ChatEvent]:
            for _ in range(frames):
                if delay:
                    await asyncio.sleep(delay)
                yield chat_pb2.ChatEvent(text=chat_pb2.TextDelta(text=FRAME))

    server = grpc.aio.server()
    chat_pb2_grpc.add_ChatServiceServicer_to_server(Chat(), server)  # type: ignore[abstract]
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    if not announce:
        return server
    print("ready", flush=True)
    await server.wait_for_termination()
    return None


async def _grpc_both(port: int, streams: int, frames: int, delay: float) -> None:
    """Server and client on one event loop: a single-process gateway's gRPC hop."""
    server = await _grpc_server(port, frames, delay, announce=False)
    await _grpc_client(port, streams)
    await server.stop(None)


async def _grpc_client(port: int, streams: int) -> None:
    import grpc

    from cursorgate.v1 import chat_pb2, chat_pb2_grpc

    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = chat_pb2_grpc.ChatServiceStub(channel)

        async def one() -> int:
            return sum([1 async for _ in stub.StreamChat(chat_pb2.ChatRequest(model="m"))])

        cpu0 = time.process_time()
        counts = await asyncio.gather(*(one() for _ in range(streams)))
    print(json.dumps({"frames": sum(counts), "cpu_s": time.process_time() - cpu0}), flush=True)


def _sse_server(port: int, frames: int, delay: float) -> None:
    import uvicorn
    from fastapi import FastAPI
    from starlette.responses import StreamingResponse

    app = FastAPI()

    @app.get("/stream")
    async def stream() -> StreamingResponse:
        async def events() -> AsyncIterator[bytes]:
            for _ in range(frames):
                if delay:
                    await asyncio.sleep(delay)
                yield b'data: {"choices":[{"index":0,"delta":{"content":"' + FRAME.encode() + b'"}}]}\n\n'

        return StreamingResponse(events(), media_type="text/event-stream")

    print("ready", flush=True)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", loop="uvloop", http="httptools")


async def _sse_client(port: int, streams: int) -> None:
    import httpx

    limits = httpx.Limits(max_connections=streams, max_keepalive_connections=streams)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:

        async def one() -> int:
            async with client.stream("GET", f"http://127.0.0.1:{port}/stream") as response:
                return sum([chunk.count("data: ") async for chunk in response.aiter_text()])

        counts = await asyncio.gather(*(one() for _ in range(streams)))
    print(json.dumps({"frames": sum(counts)}), flush=True)


# --- the measurement ---------------------------------------------------------------------------


def _spawn(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "bench.floor", *args], stdout=subprocess.PIPE, text=True)


def _wait_ready(proc: subprocess.Popen[str], port: int) -> None:
    assert proc.stdout is not None
    proc.stdout.readline()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        time.sleep(0.05)
    raise RuntimeError("server did not start")


def measure(kind: str, streams: int, frames: int, delay_ms: float) -> dict[str, float]:
    """CPU seconds per 1,000 frames of each process of one phase (`grpc` or `sse`)."""
    port = _free_port()
    server = _spawn(f"{kind}-server", str(port), str(frames), str(delay_ms))
    try:
        _wait_ready(server, port)
        server_ps = psutil.Process(server.pid)
        client = _spawn(f"{kind}-client", str(port), str(streams))
        cpu0 = cpu_seconds(server_ps)
        start = time.monotonic()
        client.wait(timeout=600)
        wall = time.monotonic() - start
        server_cpu = cpu_seconds(server_ps) - cpu0
        assert client.stdout is not None
        # The client's CPU is its own count from its first call on (interpreter start-up left out).
        result = json.loads(client.stdout.read().strip().splitlines()[-1])
        got, client_cpu = result["frames"], result.get("cpu_s", 0.0)
    finally:
        server.terminate()
        server.wait(timeout=10)
    if got != streams * frames:
        raise RuntimeError(f"{kind}: {got} frames of {streams * frames}")
    per_k = 1000.0 / got
    row = {"server": server_cpu * per_k, "wall_s": wall}
    if kind == "grpc":
        row["client"] = client_cpu * per_k
    return row


def measure_one_process(streams: int, frames: int, delay_ms: float) -> float:
    """CPU seconds per 1,000 frames of gRPC server and client sharing one process and loop."""
    proc = _spawn("grpc-both", str(_free_port()), str(streams), str(frames), str(delay_ms))
    out, _ = proc.communicate(timeout=600)
    result = json.loads(out.strip().splitlines()[-1])
    if result["frames"] != streams * frames:
        raise RuntimeError(f"grpc-both: {result['frames']} frames of {streams * frames}")
    return float(result["cpu_s"]) * 1000.0 / float(result["frames"])


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0].endswith(("-server", "-client", "-both")):
        role, rest = argv[0], argv[1:]
        # As core and facade run: uvloop, and the GIL handed over every 0.5 ms (core/__main__.py).
        sys.setswitchinterval(0.0005)
        import uvloop

        uvloop.install()
        if role == "grpc-server":
            asyncio.run(_grpc_server(int(rest[0]), int(rest[1]), float(rest[2]) / 1000))
        elif role == "grpc-both":
            asyncio.run(_grpc_both(int(rest[0]), int(rest[1]), int(rest[2]), float(rest[3]) / 1000))
        elif role == "grpc-client":
            asyncio.run(_grpc_client(int(rest[0]), int(rest[1])))
        elif role == "sse-server":
            _sse_server(int(rest[0]), int(rest[1]), float(rest[2]) / 1000)
        else:
            asyncio.run(_sse_client(int(rest[0]), int(rest[1])))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=256)
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--delay-ms", type=float, default=50.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    print(
        f"{args.streams} streams x {args.frames} frames, one every {args.delay_ms:g} ms; "
        f"CPU-s per 1,000 frames (budget for core + facade: {BUDGET_CPU_S_PER_1K})"
    )
    totals = []
    for n in range(args.rounds):
        grpc_row = measure("grpc", args.streams, args.frames, args.delay_ms)
        sse_row = measure("sse", args.streams, args.frames, args.delay_ms)
        floor = grpc_row["server"] + grpc_row["client"] + sse_row["server"]
        totals.append(floor)
        shared = measure_one_process(args.streams, args.frames, args.delay_ms)
        print(
            f"round {n + 1}: grpc.aio send {grpc_row['server']:.3f} + receive {grpc_row['client']:.3f}"
            f" + SSE write {sse_row['server']:.3f} = {floor:.3f}"
            f" ({floor / BUDGET_CPU_S_PER_1K:.1f}x the budget);"
            f" gRPC send + receive in one process: {shared:.3f}"
            f" (vs {grpc_row['server'] + grpc_row['client']:.3f} in two)"
        )
    best = min(totals)
    print(
        f"floor (best round): {best:.3f} CPU-s per 1,000 frames"
        f" = {best / BUDGET_CPU_S_PER_1K:.1f}x the budget"
    )


if __name__ == "__main__":
    main()
