"""Core's Prometheus metrics: the instruments, their names, and the HTTP endpoint that serves them.

Request metrics are recorded by `Meter.finish` (core/store/meter.py) right where the
request-log row is finished, so the log and the metrics count the same calls. Pool gauges are
computed at scrape time from the pool itself, never kept in step by hand.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Histogram, make_asgi_app
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from core.pool.accounts import AccountPool
from core.upstream.errors import Failure

log = logging.getLogger("cursorgate.metrics")

REQUESTS: Final = "cursorgate_core_requests"
REQUEST_DURATION: Final = "cursorgate_core_request_duration_seconds"
TTFT: Final = "cursorgate_core_time_to_first_token_seconds"
TOKENS: Final = "cursorgate_core_tokens"
UPSTREAM_ERRORS: Final = "cursorgate_core_upstream_errors"
ACCOUNTS: Final = "cursorgate_core_accounts"
IN_FLIGHT: Final = "cursorgate_core_pool_in_flight"
ACCOUNT_STATES: Final = ("active", "cooling_down", "disabled")
# Label value for calls refused before their model was checked: caller-chosen strings never
# become label values (one series per made-up model name would grow without bound).
UNCHECKED_MODEL: Final = "-"

# Seconds. Model answers take from under a second to many minutes; TTFT from ~50 ms to a minute.
DURATION_BUCKETS: Final = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80, 160, 320, 640)
TTFT_BUCKETS: Final = (0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60)


class _PoolCollector(Collector):
    """Accounts by state and the in-flight count, read from the pool when Prometheus scrapes."""

    def __init__(self, pool: AccountPool) -> None:
        self.pool = pool

    def collect(self) -> Iterable[Metric]:
        now = time.time()
        accounts = self.pool.all()
        states = GaugeMetricFamily(ACCOUNTS, "Cursor accounts in the pool, by state", labels=["state"])
        counts = dict.fromkeys(ACCOUNT_STATES, 0)
        for account in accounts:
            counts[account.status(now)] += 1
        for state, count in counts.items():
            states.add_metric([state], count)
        yield states
        yield GaugeMetricFamily(
            IN_FLIGHT, "Upstream calls in flight over all accounts", value=sum(a.in_flight for a in accounts)
        )


class CoreMetrics:
    """The instruments of one core process, in their own registry (tests build several cores)."""

    def __init__(self, pool: AccountPool) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            REQUESTS,
            "Chat calls finished, by outcome (ok, cancelled, or an ErrorCode name)",
            ["outcome", "model", "stream"],
            registry=self.registry,
        )
        self.duration = Histogram(
            REQUEST_DURATION,
            "Chat call duration, arrival to end",
            ["model", "stream"],
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self.ttft = Histogram(
            TTFT,
            "Arrival to the first text, reasoning or tool-call event",
            ["model", "stream"],
            buckets=TTFT_BUCKETS,
            registry=self.registry,
        )
        self.tokens = Counter(
            TOKENS,
            "Tokens Cursor reported, by direction (in, out)",
            ["model", "direction"],
            registry=self.registry,
        )
        self.upstream_errors = Counter(
            UPSTREAM_ERRORS,
            "Failed upstream attempts (failovers included), by failure class",
            ["failure"],
            registry=self.registry,
        )
        self.registry.register(_PoolCollector(pool))
        ProcessCollector(registry=self.registry)

    def record_request(
        self,
        *,
        outcome: str,
        model: str,
        stream: bool,
        duration_s: float,
        ttft_s: float | None,
        tokens_in: int,
        tokens_out: int,
    ) -> None:
        streamed = "true" if stream else "false"
        self.requests.labels(outcome, model, streamed).inc()
        self.duration.labels(model, streamed).observe(duration_s)
        if ttft_s is not None:
            self.ttft.labels(model, streamed).observe(ttft_s)
        if tokens_in:
            self.tokens.labels(model, "in").inc(tokens_in)
        if tokens_out:
            self.tokens.labels(model, "out").inc(tokens_out)

    def record_upstream_error(self, failure: Failure) -> None:
        self.upstream_errors.labels(failure.value).inc()


class MetricsServer:
    """`GET /metrics` on its own port, served by hypercorn inside core's event loop (so scrape-time
    collectors read the pool on the loop's thread, without locks)."""

    def __init__(self, metrics: CoreMetrics, host: str, port: int) -> None:
        # hypercorn is imported only when the metrics port is on (CURSORGATE_METRICS_PORT).
        from hypercorn.config import Config

        self.config = Config()
        self.config.bind = [f"{host}:{port}"]
        self.config.accesslog = None
        self.config.errorlog = None
        self._app = make_asgi_app(metrics.registry)
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        from hypercorn.asyncio import serve

        serving = serve(self._app, self.config, shutdown_trigger=self._stop.wait)
        self._task = asyncio.create_task(serving, name="metrics-server")
        self._task.add_done_callback(self._failed)

    def _failed(self, task: asyncio.Task[None]) -> None:
        # The gateway serves on without metrics (a taken port is no reason to refuse traffic).
        if not task.cancelled() and task.exception() is not None:
            log.error("metrics server on %s failed: %s", self.config.bind[0], task.exception())

    async def aclose(self) -> None:
        if self._task is None:
            return
        self._stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._task, 5)
        self._task = None
