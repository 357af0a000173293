"""`make bench-capacity` (`python -m bench.run`): direct vs core vs full path, side by side, in one run.

Starts the simulator, core and facade as separate processes on 127.0.0.1 ephemeral ports, then
for each load level runs the same scripted stream (200 chunks of 20 characters, paced or burst)
over the three paths, and writes a table to stdout, bench/capacity.json and bench/latency.png.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
from google.protobuf.internal import api_implementation

from bench import report
from bench.clients import Full, PathClient, StreamRecord, make_client
from bench.load import PhaseResult, closed_loop, hold_open
from bench.stack import LICENSE, processes, raise_fd_limit, start
from bench.stats import Sampler, percentile
from tests.procs import Stack

HERE = Path(__file__).resolve().parent
MB = 1024 * 1024
PATHS = ("direct", "core", "full")
# Hard bound on one phase beyond its nominal length, whatever happens.
MAX_DRAIN_S = 60.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    p.add_argument("--levels", default="1,64,256,1000", help="concurrent streams, paced mode")
    p.add_argument("--burst-levels", default="1,64,256", help="concurrent streams, burst mode")
    p.add_argument("--paths", default=",".join(PATHS), help="subset of direct,core,full")
    p.add_argument("--chunks", type=int, default=200, help="text chunks per stream")
    p.add_argument("--chunk-chars", type=int, default=20, help="characters per chunk")
    p.add_argument("--delay-ms", type=int, default=50, help="pause before each chunk, paced mode")
    p.add_argument("--probes", type=int, default=50, help="TTFT probe streams per paced phase")
    p.add_argument("--duration", type=float, default=4.0, help="steady-state seconds per phase")
    p.add_argument("--idle", type=int, default=2000, help="idle open streams held through the facade")
    p.add_argument("--quick", action="store_true", help="a small run: levels 1,16,64, short phases")
    p.add_argument("--out", type=Path, default=HERE / "capacity.json")
    p.add_argument("--plot", type=Path, default=HERE / "latency.png")
    p.add_argument("--keep-logs", action="store_true", help="keep the servers' logs (path printed)")
    args = p.parse_args(argv)
    if args.quick:
        args.levels, args.burst_levels, args.duration, args.idle = "1,16,64", "1,16", 2.0, 200
        args.probes = 20
    return args


def ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def ms(values: list[float], q: float) -> float | None:
    v = percentile(values, q)
    return None if v is None else round(v * 1000, 3)


def summarize(phase: PhaseResult, sampler: Sampler, mode: str, path: str, concurrency: int) -> dict[str, Any]:
    records = phase.records
    with_tokens = [r for r in records if r.times]
    stream_ttfts = [r.times[0] - r.start for r in with_tokens]
    # Paced phases measure TTFT with probes opened under the load; burst phases on every stream.
    ttfts = [p.times[0] - p.start for p in phase.probes if p.times] if phase.probes else stream_ttfts
    gaps = [b - a for r in with_tokens for a, b in zip(r.times, r.times[1:], strict=False)]
    chunks = sum(len(r.times) for r in (*records, *phase.probes))
    w0, w1 = phase.window
    in_window = sum(1 for r in records for t in r.times if w0 <= t <= w1)
    cut = sum(1 for r in records if r.error and r.error.startswith("cancelled"))
    errors = [r.error for r in (*records, *phase.probes) if r.error and not r.error.startswith("cancelled")]
    per_1k = {n: (round(c / chunks * 1000, 4) if chunks else None) for n, c in sampler.cpu.items()}
    return {
        "mode": mode,
        "path": path,
        "concurrency": concurrency,
        "streams": len(records),
        "completed": len(records) - cut - len(errors),
        "errors": len(errors),
        "cut_at_drain": cut,
        "first_error": errors[0] if errors else None,
        "chunks": chunks,
        "ttft_ms": {"p50": ms(ttfts, 50), "p99": ms(ttfts, 99)},
        "ttft_samples": len(ttfts),
        "ttft_ramp_ms": {"p50": ms(stream_ttfts, 50), "p99": ms(stream_ttfts, 99)},
        "gap_ms": {"p50": ms(gaps, 50), "p99": ms(gaps, 99)},
        "chunks_per_s": round(in_window / (w1 - w0), 1) if w1 > w0 else None,
        "cpu_s": {n: round(c, 3) for n, c in sampler.cpu.items()},
        "cpu_s_per_1k_chunks": per_1k,
        "peak_rss_mb": {n: round(v / MB, 1) for n, v in sampler.peak_rss.items()},
        "wall_s": round(phase.ended - phase.started, 2),
    }


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def diff(a: float | None, b: float | None) -> float | None:
    return round(a - b, 3) if a is not None and b is not None else None


def ratios(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    keyed = {(r["mode"], r["concurrency"], r["path"]): r for r in runs}
    for mode, conc, path in keyed:
        if path != "direct":
            continue
        direct = keyed[(mode, conc, "direct")]
        row: dict[str, Any] = {"mode": mode, "concurrency": conc}
        for other in ("full", "core"):
            r = keyed.get((mode, conc, other))
            row[f"{other}_over_direct"] = {
                "ttft_p50": ratio(r["ttft_ms"]["p50"], direct["ttft_ms"]["p50"]) if r else None,
                "ttft_p99": ratio(r["ttft_ms"]["p99"], direct["ttft_ms"]["p99"]) if r else None,
                "gap_p50": ratio(r["gap_ms"]["p50"], direct["gap_ms"]["p50"]) if r else None,
                "gap_p99": ratio(r["gap_ms"]["p99"], direct["gap_ms"]["p99"]) if r else None,
                "chunks_per_s": ratio(r["chunks_per_s"], direct["chunks_per_s"]) if r else None,
            }
        full = keyed.get((mode, conc, "full"))
        row["added_ttft_ms"] = {
            q: diff(full["ttft_ms"][q], direct["ttft_ms"][q]) if full else None for q in ("p50", "p99")
        }
        out.append(row)
    return out


async def run_phase(
    client: PathClient,
    procs: dict[str, psutil.Process],
    prompt: str,
    mode: str,
    concurrency: int,
    ramp: float,
    duration: float,
    drain: float,
    probe_prompt: str | None = None,
    probes: int = 0,
) -> dict[str, Any]:
    gc.collect()
    with Sampler(procs) as sampler:
        phase = await closed_loop(client, prompt, concurrency, ramp, duration, drain, probe_prompt, probes)
    return summarize(phase, sampler, mode, client.name, concurrency)


async def warm_up(clients: list[PathClient], prompt: str) -> None:
    for client in clients:
        records = [StreamRecord(start=0.0) for _ in range(16)]
        await asyncio.gather(*(client.run(prompt, r) for r in records))


async def idle_phase(stack: Stack, procs: dict[str, psutil.Process], count: int) -> dict[str, Any]:
    client = Full(stack.base_url, LICENSE)
    prompt = "Hold the line.\nsim: chunks=2 chunk_chars=20 stall=1 after=1"
    before = {n: procs[n].memory_info().rss for n in ("core", "facade")}
    held: dict[str, int] = {}

    def measure() -> None:
        for _ in range(3):
            for name in ("simulator", "core", "facade", "loadgen"):
                held[name] = max(held.get(name, 0), procs[name].memory_info().rss)
            time.sleep(0.3)

    try:
        result = await hold_open(client, prompt, count, open_rate=500.0, wait_s=60.0, measure=measure)
    finally:
        await client.aclose()
    gateway = held.get("core", 0) + held.get("facade", 0)
    return {
        "streams": count,
        "with_first_token": result.with_first_token,
        "ttft_ms": {
            "p50": result.ttft_p50_ms and round(result.ttft_p50_ms, 2),
            "p99": result.ttft_p99_ms and round(result.ttft_p99_ms, 2),
        },
        "rss_mb_held": {n: round(v / MB, 1) for n, v in held.items()},
        "rss_mb_before": {n: round(v / MB, 1) for n, v in before.items()},
        "gateway_rss_mb": round(gateway / MB, 1),
        "gateway_kb_per_stream": round((gateway - sum(before.values())) / 1024 / max(1, count), 1),
        "errors": result.errors,
    }


def check_targets(
    runs: list[dict[str, Any]], rows: list[dict[str, Any]], idle: dict[str, Any] | None
) -> dict[str, Any]:
    at256 = next((r for r in rows if r["mode"] == "paced" and r["concurrency"] == 256), None)
    bursts = [r for r in runs if r["mode"] == "burst" and r["path"] == "full" and r["chunks_per_s"]]
    best = max(bursts, key=lambda r: r["chunks_per_s"], default=None)
    out: dict[str, Any] = {}
    if at256:
        p50, p99 = at256["added_ttft_ms"]["p50"], at256["added_ttft_ms"]["p99"]
        out["added_ttft_256_p50_ms"] = {"value": p50, "target": 2.0, "met": p50 is not None and p50 <= 2.0}
        out["added_ttft_256_p99_ms"] = {"value": p99, "target": 10.0, "met": p99 is not None and p99 <= 10.0}
    if best:
        cpu = best["cpu_s_per_1k_chunks"]
        # If core and facade each had a core of their own (no simulator, no load generator):
        worst = max(cpu["core"] or 0, cpu["facade"] or 0)
        out["burst_full_chunks_per_s"] = {
            "value": best["chunks_per_s"],
            "concurrency": best["concurrency"],
            "target": 5000,
            "met": best["chunks_per_s"] >= 5000,
            "gateway_ceiling_chunks_per_s": round(1000 / worst) if worst else None,
        }
    if idle:
        v = idle["gateway_rss_mb"]
        out[f"idle_{idle['streams']}_rss_mb"] = {
            "value": v,
            "streams_open": idle["with_first_token"],
            "target": 512,
            "met": v <= 512 and idle["with_first_token"] == idle["streams"],
        }
    return out


async def bench(args: argparse.Namespace, stack: Stack) -> dict[str, Any]:
    procs = processes(stack)
    paths = [p for p in args.paths.split(",") if p in PATHS]
    clients = [
        make_client(p, stack.sim_url, stack.token, stack.grpc_target, stack.base_url, LICENSE) for p in paths
    ]
    base = f"Benchmark stream.\nsim: chunks={args.chunks} chunk_chars={args.chunk_chars}"
    paced, burst = f"{base} delay_ms={args.delay_ms}", base
    # TTFT probes: short streams at the same pace, opened while the paced load runs.
    probe = f"Probe stream.\nsim: chunks=5 chunk_chars={args.chunk_chars} delay_ms={args.delay_ms}"
    nominal = args.chunks * args.delay_ms / 1000
    runs: list[dict[str, Any]] = []
    try:
        await warm_up(clients, burst)
        plan = [("paced", c) for c in ints(args.levels)] + [("burst", c) for c in ints(args.burst_levels)]
        for mode, conc in plan:
            for client in clients:
                if mode == "paced":
                    ramp, drain, prompt, probes = min(nominal, 2.0), 15.0, paced, args.probes
                else:
                    ramp, drain, prompt, probes = 0.2, 20.0, burst, 0
                row = await run_phase(
                    client, procs, prompt, mode, conc, ramp, args.duration, drain, probe, probes
                )
                runs.append(row)
                print(
                    f"  {mode:<5} {conc:>5} {client.name:<6} ttft p50 {row['ttft_ms']['p50']} ms"
                    f"  p99 {row['ttft_ms']['p99']} ms  {row['chunks_per_s']} chunks/s"
                    f"  errors {row['errors']}  ({row['wall_s']} s)",
                    flush=True,
                )
                await asyncio.sleep(0.5)
    finally:
        for client in clients:
            await client.aclose()
    idle = None
    if args.idle and "full" in paths:
        print(f"  idle: holding {args.idle} streams open through the facade...", flush=True)
        idle = await idle_phase(stack, procs, args.idle)
        print(f"  idle: {idle['with_first_token']} open, core+facade {idle['gateway_rss_mb']} MB", flush=True)
    rows = ratios(runs)
    return {"runs": runs, "ratios": rows, "idle": idle, "targets": check_targets(runs, rows, idle)}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    fd_limit = raise_fd_limit()  # before spawning: the servers inherit it
    # The load generator's clients hand results over from threads too (pyqwest, grpcio's
    # poller), like the servers (see core/__main__.py): same setting, so no path is favoured.
    sys.setswitchinterval(0.0005)
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover
        pass
    load_before = os.getloadavg()
    started = time.monotonic()
    with contextlib.ExitStack() as cleanup:
        tmp = tempfile.mkdtemp(prefix="cursorgate-bench-")
        if not args.keep_logs:
            cleanup.callback(shutil.rmtree, tmp, ignore_errors=True)
        print(f"starting simulator, core and facade (logs in {tmp})...", flush=True)
        stack = start(Path(tmp))
        try:
            results = asyncio.run(bench(args, stack))
        except BaseException:
            print(stack.facade.log.read_text()[-2000:], stack.core.log.read_text()[-2000:], file=sys.stderr)
            raise
        finally:
            stack.stop()
    results["meta"] = {
        "command": "make bench-capacity"
        + (" BENCH_ARGS=" + " ".join(argv or sys.argv[1:]) if (argv or sys.argv[1:]) else ""),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "cpus": os.cpu_count(),
        "cpu_model": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "protobuf_backend": api_implementation.Type(),
        "fd_limit": fd_limit,
        "load_avg_before": [round(x, 2) for x in load_before],
        "load_avg_after": [round(x, 2) for x in os.getloadavg()],
        "total_s": round(time.monotonic() - started, 1),
        "script": {"chunks": args.chunks, "chunk_chars": args.chunk_chars, "delay_ms": args.delay_ms},
        "duration_s": args.duration,
    }
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print()
    print(report.run_table(results["runs"]))
    print()
    print(report.ratio_table(results["ratios"]))
    if results["idle"]:
        i = results["idle"]
        print(
            f"\nidle: {i['with_first_token']}/{i['streams']} streams open after their first token;"
            f" core+facade RSS {i['gateway_rss_mb']} MB ({i['gateway_kb_per_stream']} KB/stream);"
            f" held RSS MB {i['rss_mb_held']}"
        )
    print("\ntargets:")
    for name, t in results["targets"].items():
        print(f"  {name}: {t}")
    try:
        report.plot(results["runs"], args.plot, f"TTFT vs concurrency ({results['meta']['date']})")
        print(f"\nwrote {args.out} and {args.plot} in {results['meta']['total_s']} s")
    except ImportError:
        print(f"\nwrote {args.out} (matplotlib missing: no plot) in {results['meta']['total_s']} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
