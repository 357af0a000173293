"""Percentiles and per-process resource sampling (psutil)."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import psutil


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile of `values` (q in 0..100); None when there are none."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def cpu_seconds(proc: psutil.Process) -> float:
    """User + system CPU of a process and its threads (gRPC's C-core threads included)."""
    times = proc.cpu_times()
    return float(times.user + times.system)


@dataclass
class Sampler:
    """Samples RSS of named processes every `interval` seconds in a thread; keeps the peak."""

    procs: dict[str, psutil.Process]
    interval: float = 0.05
    peak_rss: dict[str, int] = field(default_factory=dict)
    last_rss: dict[str, int] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _cpu0: dict[str, float] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)

    def _sample(self) -> None:
        for name, proc in self.procs.items():
            try:
                rss = int(proc.memory_info().rss)
            except psutil.Error:
                continue
            self.last_rss[name] = rss
            self.peak_rss[name] = max(self.peak_rss.get(name, 0), rss)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def __enter__(self) -> Sampler:
        self._cpu0 = {name: cpu_seconds(p) for name, p in self.procs.items()}
        self._sample()
        self._thread = threading.Thread(target=self._loop, name="rss-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        self._sample()
        self.cpu = {name: cpu_seconds(p) - self._cpu0[name] for name, p in self.procs.items()}


def total_rss(procs: dict[str, psutil.Process], names: Sequence[str]) -> int:
    return sum(int(procs[n].memory_info().rss) for n in names)


def now() -> float:
    return time.perf_counter()
