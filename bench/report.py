"""The capacity bench's table on stdout, capacity.json, and the latency plot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

PROCS = ("simulator", "core", "facade", "loadgen")
PATH_LABEL = {"direct": "direct (Connect -> simulator)", "core": "core (gRPC)", "full": "full (facade SSE)"}


def _f(value: object, fmt: str = "{:.1f}") -> str:
    return "-" if value is None else fmt.format(value)


def run_table(runs: list[dict[str, Any]]) -> str:
    head = (
        f"{'mode':<6}{'conc':>5} {'path':<7}{'streams':>8}{'err':>5}"
        f"{'TTFT p50':>9}{'p99':>8}{'gap p50':>8}{'p99':>8}{'chunks/s':>10}"
        f" | {'CPU s/1k chunks: sim':>20}{'core':>6}{'facade':>7}{'load':>6}"
        f" | {'peak RSS MB: sim':>16}{'core':>6}{'facade':>7}"
    )
    lines = [head, "-" * len(head)]
    for r in runs:
        cpu, rss = r["cpu_s_per_1k_chunks"], r["peak_rss_mb"]
        lines.append(
            f"{r['mode']:<6}{r['concurrency']:>5} {r['path']:<7}{r['streams']:>8}{r['errors']:>5}"
            f"{_f(r['ttft_ms']['p50'], '{:.2f}'):>9}{_f(r['ttft_ms']['p99']):>8}"
            f"{_f(r['gap_ms']['p50'], '{:.2f}'):>8}{_f(r['gap_ms']['p99']):>8}"
            f"{_f(r['chunks_per_s'], '{:.0f}'):>10}"
            f" | {_f(cpu['simulator'], '{:.3f}'):>20}{_f(cpu['core'], '{:.3f}'):>6}"
            f"{_f(cpu['facade'], '{:.3f}'):>7}{_f(cpu['loadgen'], '{:.3f}'):>6}"
            f" | {_f(rss['simulator'], '{:.0f}'):>16}{_f(rss['core'], '{:.0f}'):>6}"
            f"{_f(rss['facade'], '{:.0f}'):>7}"
        )
    return "\n".join(lines)


def ratio_table(ratios: list[dict[str, Any]]) -> str:
    head = (
        f"{'mode':<6}{'conc':>5}  {'added TTFT ms p50':>17}{'p99':>8}"
        f"  {'full/direct TTFT p50':>20}{'p99':>6}{'gap p50':>8}{'chunks/s':>9}"
        f"  {'core/direct TTFT p50':>20}{'p99':>6}{'gap p50':>8}{'chunks/s':>9}"
    )
    lines = [head, "-" * len(head)]
    for r in ratios:
        full, core = r["full_over_direct"], r["core_over_direct"]
        lines.append(
            f"{r['mode']:<6}{r['concurrency']:>5}  {_f(r['added_ttft_ms']['p50'], '{:.2f}'):>17}"
            f"{_f(r['added_ttft_ms']['p99'], '{:.2f}'):>8}"
            f"  {_f(full['ttft_p50'], '{:.2f}'):>20}{_f(full['ttft_p99'], '{:.2f}'):>6}"
            f"{_f(full['gap_p50'], '{:.2f}'):>8}{_f(full['chunks_per_s'], '{:.2f}'):>9}"
            f"  {_f(core['ttft_p50'], '{:.2f}'):>20}{_f(core['ttft_p99'], '{:.2f}'):>6}"
            f"{_f(core['gap_p50'], '{:.2f}'):>8}{_f(core['chunks_per_s'], '{:.2f}'):>9}"
        )
    return "\n".join(lines)


def plot(runs: list[dict[str, Any]], out: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    colors = {"direct": "tab:green", "core": "tab:blue", "full": "tab:red"}
    for ax, mode in zip(axes, ("paced", "burst"), strict=True):
        for path in ("direct", "core", "full"):
            rows = sorted(
                (r for r in runs if r["mode"] == mode and r["path"] == path and r["ttft_ms"]["p50"]),
                key=lambda r: r["concurrency"],
            )
            if not rows:
                continue
            xs = [r["concurrency"] for r in rows]
            ax.plot(xs, [r["ttft_ms"]["p50"] for r in rows], "o-", color=colors[path], label=f"{path} p50")
            ax.plot(xs, [r["ttft_ms"]["p99"] for r in rows], "s--", color=colors[path], label=f"{path} p99")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("concurrent streams")
        ax.set_ylabel("time to first token (ms)")
        ax.set_title(f"{mode}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
