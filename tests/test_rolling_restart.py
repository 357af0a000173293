"""A rolling restart under load: 100 concurrent streamed chats spread over two facades, each facade
round-robining over two cores (gRPC health checks), while each facade and then each core in turn is
sent SIGTERM, drains, exits and is started again.

What a client sees is sorted into: a stream that completed (its whole text, `finish_reason`
"stop", `[DONE]`); a stream cut once it had begun (must never happen: draining lets it finish);
and a request refused before any byte, either with a clean 503 + Retry-After (a draining facade,
or core refusing while its health change is on its way) or with no connection at all (a facade
between exit and start). A refused request is retried on the other facade, as a load balancer
would, after the Retry-After (capped at 1 s); the test counts those retries and asserts no other
outcome. `-m replicas` selects it; it runs in `make test`."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.cluster import MODEL, Cluster, redis_server, shared_database, start_cluster
from tests.procs import Proc

# Six processes to start, then four to restart: minutes on a loaded 2-core machine, not seconds.
pytestmark = [pytest.mark.replicas, pytest.mark.timeout(420)]

STREAMS = 100
# 12 text frames 250 ms apart: about 3 s a stream, so every restart finds streams in flight.
CHUNKS, DELAY_MS = 12, 250
# Tries of one chat before the test gives up on it (each refusal waits up to 1 s).
MAX_TRIES = 30


def words(worker: int, n: int) -> list[str]:
    return [f"w{worker}s{n}p{k}" for k in range(CHUNKS)]


@dataclass
class Tally:
    outcomes: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    # Per worker: how many of its streams completed, and whether its first one did.
    completed: Counter[int] = field(default_factory=Counter)
    first_done: set[int] = field(default_factory=set)
    completed_after_restarts_began: int = 0
    # Workers receiving a stream's text right now, and those that ever did.
    streaming: set[int] = field(default_factory=set)
    began: set[int] = field(default_factory=set)


async def one_try(client: httpx.AsyncClient, url: str, worker: int, n: int, tally: Tally) -> str:
    """One attempt at one stream: "ok", "refused" (clean 503 + Retry-After), "unreachable" (no
    answer at all), "cut" (began, then broke off) or "error" (any other answer)."""
    text = "_".join(words(worker, n))
    body = {
        "model": MODEL,
        "stream": True,
        "messages": [{"role": "user", "content": f"sim: chunks={CHUNKS} delay_ms={DELAY_MS} text={text}"}],
    }
    began = False
    parts: list[str] = []
    finish, done = None, False
    try:
        async with client.stream("POST", f"{url}/chat/completions", json=body) as response:
            if response.status_code == 503 and response.headers.get("retry-after"):
                await response.aread()
                return "refused"
            if response.status_code != 200:
                tally.problems.append(f"status {response.status_code}: {(await response.aread())[:300]!r}")
                return "error"
            async for line in response.aiter_lines():
                if line == "data: [DONE]":
                    done = True
                elif line.startswith("data: "):
                    chunk = json.loads(line.removeprefix("data: "))
                    for choice in chunk.get("choices", []):
                        if choice["delta"].get("content"):
                            began = True
                            tally.streaming.add(worker)
                            tally.began.add(worker)
                            parts.append(choice["delta"]["content"])
                        finish = choice.get("finish_reason") or finish
    except httpx.TransportError as err:
        if not began and not parts:
            return "unreachable"
        tally.problems.append(f"worker {worker} stream {n} cut after {len(parts)} parts: {err!r}")
        return "cut"
    finally:
        tally.streaming.discard(worker)
    if "".join(parts) == " ".join(words(worker, n)) and finish == "stop" and done:
        return "ok"
    tally.problems.append(f"worker {worker} stream {n} incomplete: {''.join(parts)!r} finish={finish}")
    return "cut" if began else "error"


async def worker_loop(
    client: httpx.AsyncClient,
    urls: list[str],
    worker: int,
    stop: asyncio.Event,
    restarts_began: asyncio.Event,
    tally: Tally,
) -> None:
    n = 0
    while not stop.is_set():
        started_after = restarts_began.is_set()
        for attempt in range(MAX_TRIES):
            # The worker's own facade first, then the other one, alternating, as a balancer would.
            outcome = await one_try(client, urls[(worker + attempt) % 2], worker, n, tally)
            tally.outcomes[outcome] += 1
            if outcome == "refused":
                await asyncio.sleep(1)
            elif outcome == "unreachable":
                await asyncio.sleep(0.2)
            else:
                break
        else:
            tally.problems.append(f"worker {worker} stream {n}: refused {MAX_TRIES} times")
            return
        if outcome != "ok":
            return
        tally.completed[worker] += 1
        if n == 0:
            tally.first_done.add(worker)
        if started_after:
            tally.completed_after_restarts_began += 1
        n += 1


async def restart(proc: Proc, settle_s: float) -> int:
    """SIGTERM, wait for the drain and the exit, start again; the exit code."""
    assert proc.popen is not None
    proc.popen.send_signal(signal.SIGTERM)
    code = await asyncio.to_thread(proc.popen.wait, 60)
    proc.popen = None
    await asyncio.to_thread(proc.start)
    await asyncio.sleep(settle_s)  # the facades' channels find a restarted core within 250 ms
    return code


async def rolling_restart(cluster: Cluster) -> tuple[Tally, dict[str, int], float, int]:
    tally = Tally()
    stop, restarts_began = asyncio.Event(), asyncio.Event()
    urls = [cluster.url(0), cluster.url(1)]
    limits = httpx.Limits(max_connections=4 * STREAMS, max_keepalive_connections=0)
    headers = {"authorization": f"Bearer {cluster.license}"}
    async with httpx.AsyncClient(limits=limits, headers=headers, timeout=60) as client:
        workers = [
            asyncio.create_task(worker_loop(client, urls, w, stop, restarts_began, tally))
            for w in range(STREAMS)
        ]
        # Every client has begun streaming before the first SIGTERM.
        deadline = time.monotonic() + 60
        while len(tally.began) < STREAMS and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert len(tally.began) == STREAMS, f"only {len(tally.began)} streams began"
        streaming_at_sigterm = len(tally.streaming)
        restarts_began.set()
        began = time.monotonic()
        exits = {}
        for proc in [*cluster.facades, *cluster.cores]:
            exits[proc.name] = await restart(proc, 1.0 if proc in cluster.cores else 0.2)
        took = time.monotonic() - began
        stop.set()
        await asyncio.gather(*workers)
    return tally, exits, took, streaming_at_sigterm


@pytest.fixture
def round_robin_cluster(tmp_path: Path) -> object:
    with redis_server(tmp_path) as redis_url, shared_database(tmp_path) as database_url:
        env = {"CURSORGATE_DRAIN_TIMEOUT": "30", "CURSORGATE_LOG_LEVEL": "WARNING"}
        cluster = start_cluster(tmp_path, redis_url, database_url, env, pinned=False)
        try:
            yield cluster
        finally:
            cluster.stop()


def test_a_rolling_restart_under_100_streams_cuts_none(round_robin_cluster: Cluster) -> None:
    cluster = round_robin_cluster
    tally, exits, took, streaming_at_sigterm = asyncio.run(rolling_restart(cluster))
    print(
        f"rolling restart took {took:.1f} s; {streaming_at_sigterm} streams mid-way at the first "
        f"SIGTERM; outcomes {dict(tally.outcomes)}"
    )

    assert tally.problems == [], "\n".join(tally.problems[:20])
    assert tally.outcomes["cut"] == 0 and tally.outcomes["error"] == 0
    # Each process drained in time and exited (the facade by re-raising SIGTERM, as uvicorn does).
    assert exits == {"facade-0": -signal.SIGTERM, "facade-1": -signal.SIGTERM, "core-0": 0, "core-1": 0}
    assert "drain timeout" not in cluster.logs()
    # The 100 first streams (most still mid-way at the first SIGTERM) all finished whole...
    assert streaming_at_sigterm >= STREAMS // 2
    assert tally.first_done == set(range(STREAMS))
    # ...and the clients went on being served during the restarts (several rounds each).
    assert tally.completed_after_restarts_began >= 2 * STREAMS
    assert min(tally.completed[w] for w in range(STREAMS)) >= 3
    # The refusals the test retried were clean ones: a 503 with Retry-After, or no connection.
    assert set(tally.outcomes) <= {"ok", "refused", "unreachable"}
