"""Closed-loop load: N workers keep N streams open, back to back, with staggered starts."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

from bench.clients import PathClient, StreamRecord
from bench.stats import now, percentile

CUT = "cancelled at the end of the phase"


def _cancelling() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


@dataclass
class PhaseResult:
    records: list[StreamRecord]
    started: float
    window: tuple[float, float]
    ended: float
    # Short streams opened while the load runs: time to first token under that load.
    probes: list[StreamRecord] = field(default_factory=list)


async def closed_loop(
    client: PathClient,
    prompt: str,
    concurrency: int,
    ramp: float,
    duration: float,
    drain: float,
    probe_prompt: str | None = None,
    probes: int = 0,
) -> PhaseResult:
    """Worker i starts at ramp*i/N, then runs streams back to back until ramp+duration.

    Without probes, streams in flight then get up to `drain` seconds to finish. With probes
    (for long paced streams), `probes` short streams are opened evenly over the window after
    the ramp, and the load is cut when the last probe is done (at most `drain` seconds late).
    """
    records: list[StreamRecord] = []
    probe_records: list[StreamRecord] = []
    started = now()
    stop_at = started + ramp + duration

    async def worker(i: int) -> None:
        await asyncio.sleep(ramp * i / concurrency)
        while now() < stop_at:
            rec = StreamRecord(start=now())
            records.append(rec)
            try:
                await client.run(prompt, rec)
            except asyncio.CancelledError:
                rec.error = CUT
                raise
            except Exception as err:
                if _cancelling():  # connectrpc turns a cancellation into ConnectError(CANCELED)
                    rec.error = CUT
                    raise asyncio.CancelledError from None
                rec.error = f"{type(err).__name__}: {err}"[:300]
                await asyncio.sleep(0.05)  # no hot loop on a failing path

    async def probe(delay: float) -> None:
        await asyncio.sleep(delay)
        rec = StreamRecord(start=now())
        probe_records.append(rec)
        try:
            await client.run(probe_prompt or prompt, rec)
        except Exception as err:
            rec.error = f"{type(err).__name__}: {err}"[:300]

    tasks = [asyncio.create_task(worker(i)) for i in range(concurrency)]
    if probes:
        every = duration / probes
        probe_tasks = [asyncio.create_task(probe(ramp + every * (k + 0.5))) for k in range(probes)]
        _, late = await asyncio.wait(probe_tasks, timeout=ramp + duration + drain)
        for task in late:
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)
        ended = now()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return PhaseResult(records, started, (started + ramp, min(stop_at, ended)), ended, probe_records)
    _, pending = await asyncio.wait(tasks, timeout=ramp + duration + drain)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    return PhaseResult(records, started, (started + ramp, stop_at), now())


@dataclass
class IdleResult:
    opened: int
    with_first_token: int
    ttft_p50_ms: float | None
    ttft_p99_ms: float | None
    errors: list[str]


async def hold_open(
    client: PathClient, prompt: str, count: int, open_rate: float, wait_s: float, measure: object
) -> IdleResult:
    """Opens `count` streams at `open_rate`/s, waits until each got its first token (bounded by
    `wait_s`), calls `measure()` while all are held open, then releases and closes them."""
    hold = asyncio.Event()
    records = [StreamRecord(start=0.0) for _ in range(count)]
    got_first = 0

    async def one(i: int) -> None:
        nonlocal got_first
        await asyncio.sleep(i / open_rate)
        rec = records[i]
        rec.start = now()
        try:
            await client.run(prompt, rec, hold)
        except Exception as err:
            rec.error = f"{type(err).__name__}: {err}"[:300]

    tasks = [asyncio.create_task(one(i)) for i in range(count)]
    deadline = now() + count / open_rate + wait_s
    while now() < deadline:
        ready = sum(1 for r in records if r.times)
        failed = sum(1 for r in records if r.error)
        if ready + failed >= count:
            break
        await asyncio.sleep(0.2)
    ready_records = [r for r in records if r.times]
    assert callable(measure)
    await asyncio.to_thread(measure)
    hold.set()
    _, pending = await asyncio.wait(tasks, timeout=30)
    for task in pending:
        task.cancel()
    with contextlib.suppress(Exception):
        await asyncio.gather(*pending, return_exceptions=True)
    ttfts = [(r.times[0] - r.start) * 1000 for r in ready_records]
    return IdleResult(
        opened=count,
        with_first_token=len(ready_records),
        ttft_p50_ms=percentile(ttfts, 50),
        ttft_p99_ms=percentile(ttfts, 99),
        errors=sorted({r.error for r in records if r.error})[:5],
    )
