"""Bounded load on loopback: N concurrent streams through facade -> core -> simulator.

Every stream must finish with its whole answer and `[DONE]` (zero errors), within a time bound;
afterwards nothing may be left behind: no open upstream stream at the simulator, file descriptors
and threads of facade and core back to their baseline, and resident memory back near it.

The baseline is taken after a warm-up round of the same size, once allocator arenas, gRPC and
HTTP connection pools and caches have grown to their working size: memory that keeps growing
after that is a leak.

Size: `CURSORGATE_LOAD_STREAMS` (default 200, the CI size); `make load` runs 1,000.
`CURSORGATE_LOAD_ROUNDS` measured rounds after the warm-up (default 2).
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil
import pytest

from tests.procs import Proc, Stack, start_stack

STREAMS = int(os.environ.get("CURSORGATE_LOAD_STREAMS", "200"))
ROUNDS = int(os.environ.get("CURSORGATE_LOAD_ROUNDS", "2"))
# Each stream: 8 text frames, spaced so that a stream outlasts the time it takes to open all of a
# round's streams (about 10 ms each here): they are all open upstream at the same time.
CHUNKS = 8
DELAY_MS = max(25, STREAMS * 12 // CHUNKS)
PROMPT = f"load test\nsim: chunks={CHUNKS} delay_ms={DELAY_MS}"
# Seconds one round may take: generous for 2 cores running client, facade, core and simulator.
ROUND_TIMEOUT = 30 + STREAMS * 0.1
# Memory after the load may exceed the baseline by this much (allocator noise, lazily grown caches).
RSS_TOLERANCE_BYTES = 24 * 1024 * 1024
RSS_TOLERANCE_RATIO = 0.10
# Descriptors and threads: a few come and go on their own (log rotation, executor threads).
FD_TOLERANCE = 8
THREAD_TOLERANCE = 4
# pyqwest's runtime keeps idle blocking-pool threads (one per new upstream connection) for 10 s.
SETTLE_SECONDS = 20.0


def raise_fd_limit(needed: int) -> int:
    """Raise this process's soft RLIMIT_NOFILE (the servers inherit it) to what the load needs."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


@dataclass
class Usage:
    rss: int
    fds: int
    threads: int
    connections: int

    @classmethod
    def of(cls, proc: psutil.Process) -> Usage:
        with proc.oneshot():
            return cls(
                rss=proc.memory_info().rss,
                fds=proc.num_fds(),
                threads=proc.num_threads(),
                connections=len(proc.net_connections(kind="tcp")),
            )


@dataclass
class RoundResult:
    ok: int = 0
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0
    peak_open_streams: int = 0
    peak_rss: dict[str, int] = field(default_factory=dict)


def process(proc: Proc) -> psutil.Process:
    assert proc.popen is not None
    return psutil.Process(proc.popen.pid)


async def one_stream(client: httpx.AsyncClient, stack: Stack, n: int) -> str | None:
    """Runs one streaming completion; None when it was whole, else what went wrong."""
    body = {"model": "gpt-5.2", "messages": [{"role": "user", "content": f"{PROMPT}\n#{n}"}], "stream": True}
    headers = {"Authorization": f"Bearer {stack.license}"}
    try:
        async with client.stream("POST", "/chat/completions", json=body, headers=headers) as response:
            if response.status_code != 200:
                return f"HTTP {response.status_code}: {(await response.aread())[:200]!r}"
            data = [line[6:] async for line in response.aiter_lines() if line.startswith("data: ")]
    except httpx.HTTPError as error:
        return f"{type(error).__name__}: {error}"
    if not data or data[-1] != "[DONE]":
        return f"no [DONE] after {len(data)} events"
    events = [json.loads(line) for line in data[:-1]]
    if any("error" in event for event in events):
        return f"error event: {events[-1]}"
    text = "".join(e["choices"][0]["delta"].get("content") or "" for e in events if e.get("choices"))
    if f"#{n}" not in text or events[-1]["choices"][0]["finish_reason"] != "stop":
        return f"incomplete answer: {text[-80:]!r}"
    return None


async def run_round(stack: Stack, procs: dict[str, psutil.Process], streams: int) -> RoundResult:
    result = RoundResult(peak_rss={name: 0 for name in procs})
    limits = httpx.Limits(max_connections=streams, max_keepalive_connections=streams)
    timeout = httpx.Timeout(ROUND_TIMEOUT, connect=ROUND_TIMEOUT)
    finished = asyncio.Event()

    async def sample() -> None:
        # A new connection per poll: under load a kept-alive one may be closed as it is reused.
        no_keepalive = httpx.Limits(max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=stack.sim_url, timeout=5, limits=no_keepalive) as sim:
            while not finished.is_set():
                try:
                    stats = (await sim.get("/__sim/stats")).json()
                except httpx.TransportError:
                    stats = {"open_streams": 0}  # a missed sample; the round itself decides
                result.peak_open_streams = max(result.peak_open_streams, stats["open_streams"])
                for name, proc in procs.items():
                    result.peak_rss[name] = max(result.peak_rss[name], proc.memory_info().rss)
                await asyncio.sleep(0.1)

    async with httpx.AsyncClient(base_url=stack.base_url, limits=limits, timeout=timeout) as client:
        sampler = asyncio.create_task(sample())
        started = time.monotonic()
        try:
            outcomes = await asyncio.wait_for(
                asyncio.gather(*(one_stream(client, stack, n) for n in range(streams))), ROUND_TIMEOUT
            )
        finally:
            result.seconds = time.monotonic() - started
            finished.set()
            await sampler
    result.errors = [outcome for outcome in outcomes if outcome is not None]
    result.ok = streams - len(result.errors)
    return result


def settle(stack: Stack, procs: dict[str, psutil.Process], idle: dict[str, Usage]) -> dict[str, Usage]:
    """Usage once back to `idle` (bounded wait: connections close and pool threads exit lazily)."""
    deadline = time.monotonic() + SETTLE_SECONDS
    while True:
        open_streams = stack.sim_control("stats")["open_streams"]
        usage = {name: Usage.of(proc) for name, proc in procs.items()}
        back = open_streams == 0 and all(
            usage[name].fds <= idle[name].fds + FD_TOLERANCE
            and usage[name].threads <= idle[name].threads + THREAD_TOLERANCE
            for name in procs
        )
        if back or time.monotonic() > deadline:
            return usage
        time.sleep(0.2)


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    # Each stream holds a client socket and a facade socket here, plus slack for the rest.
    limit = raise_fd_limit(4 * STREAMS + 1024)
    assert limit >= 2 * STREAMS + 256, f"RLIMIT_NOFILE {limit} is too low for {STREAMS} streams"
    gateway = start_stack(tmp_path_factory.mktemp("load"), {"CURSORGATE_LOG_LEVEL": "WARNING"})
    yield gateway
    gateway.stop()


@pytest.mark.timeout(120 + (ROUNDS + 1) * ROUND_TIMEOUT + SETTLE_SECONDS)
def test_concurrent_streams_no_errors_no_leaks(loaded: Stack) -> None:
    procs = {"facade": process(loaded.facade), "core": process(loaded.core)}
    for name, proc in procs.items():
        assert proc.rlimit(psutil.RLIMIT_NOFILE)[0] >= 2 * STREAMS, f"{name} has too few descriptors"
    initial = {name: Usage.of(proc) for name, proc in procs.items()}
    loop = asyncio.new_event_loop()
    try:
        warm = loop.run_until_complete(run_round(loaded, procs, STREAMS))
        assert warm.errors == [], warm.errors[:5]
        baseline = {name: Usage.of(proc) for name, proc in procs.items()}
        rounds = []
        for _ in range(ROUNDS):
            result = loop.run_until_complete(run_round(loaded, procs, STREAMS))
            assert result.errors == [], result.errors[:5]
            assert result.ok == STREAMS
            rounds.append(result)
    finally:
        loop.close()
    after = settle(loaded, procs, initial)

    report = {
        "streams": STREAMS,
        "rounds": ROUNDS,
        "warmup_seconds": round(warm.seconds, 2),
        "round_seconds": [round(r.seconds, 2) for r in rounds],
        "peak_open_upstream_streams": max(r.peak_open_streams for r in rounds),
        "errors": sum(len(r.errors) for r in rounds),
        **{
            name: {
                "rss_mib_baseline": round(baseline[name].rss / 2**20, 1),
                "rss_mib_peak": round(max(r.peak_rss[name] for r in rounds) / 2**20, 1),
                "rss_mib_after": round(after[name].rss / 2**20, 1),
                "fds_idle": initial[name].fds,
                "fds_after": after[name].fds,
                "threads_idle": initial[name].threads,
                "threads_after": after[name].threads,
                "tcp_idle": initial[name].connections,
                "tcp_after": after[name].connections,
            }
            for name in procs
        },
    }
    print("\nLOAD " + json.dumps(report))
    (Path(loaded.facade.log).parent / "load-report.json").write_text(json.dumps(report, indent=2))

    assert loaded.sim_control("stats")["open_streams"] == 0
    # Concurrency was real: most of a round's streams were open upstream at once.
    assert report["peak_open_upstream_streams"] >= STREAMS // 2  # type: ignore[operator]
    for name in procs:
        base, before, now = baseline[name], initial[name], after[name]
        allowed = base.rss + max(RSS_TOLERANCE_BYTES, int(base.rss * RSS_TOLERANCE_RATIO))
        assert now.rss <= allowed, f"{name} RSS {now.rss} > {allowed} (baseline {base.rss})"
        # Descriptors, threads and connections are back to what the idle, fresh process had.
        assert now.fds <= before.fds + FD_TOLERANCE, f"{name} fds {before.fds} -> {now.fds}"
        assert now.threads <= before.threads + THREAD_TOLERANCE, (
            f"{name} threads {before.threads} -> {now.threads}"
        )
        assert now.connections <= before.connections + FD_TOLERANCE, (
            f"{name} tcp {before.connections} -> {now.connections}"
        )
