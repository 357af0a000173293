"""The facade's Prometheus metrics: a pure ASGI middleware that measures each HTTP request, and
the `/metrics` route that serves them (the official client, one registry per app)."""

from __future__ import annotations

import re
import time
from typing import Final

from fastapi import APIRouter
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.process_collector import ProcessCollector
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUESTS: Final = "cursorgate_facade_requests"
REQUEST_DURATION: Final = "cursorgate_facade_request_duration_seconds"
TTFT: Final = "cursorgate_facade_time_to_first_token_seconds"
METRICS_PATH: Final = "/metrics"
# Label values that are never caller-chosen: the route template, or these.
UNMATCHED_ROUTE: Final = "<unmatched>"
NO_MODEL: Final = "-"

DURATION_BUCKETS: Final = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80, 160, 320, 640)
TTFT_BUCKETS: Final = (0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60)

# The request's top-level "model": inside JSON strings quotes are escaped, so an unescaped
# `"model": "..."` is a key. Found by scanning the body as it streams in, never parsing it twice.
_MODEL = re.compile(rb'"model"\s*:\s*"([^"\\]{1,200})"')
# Bytes kept from one body chunk to the next, so a key split across chunks is still found.
_CARRY = 256


class FacadeMetrics:
    """The instruments of one facade app."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            REQUESTS,
            "HTTP requests answered, by route template (no /cursor/v1 or /v1 prefix), method, status, model",
            ["route", "method", "status", "model"],
            registry=self.registry,
        )
        self.duration = Histogram(
            REQUEST_DURATION,
            "HTTP request duration, arrival to the last byte",
            ["route", "method"],
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self.ttft = Histogram(
            TTFT,
            "Event streams: arrival to the first event (keep-alives not counted)",
            ["route", "model"],
            buckets=TTFT_BUCKETS,
            registry=self.registry,
        )
        ProcessCollector(registry=self.registry)


class _ModelScan:
    def __init__(self) -> None:
        self.model = ""
        self._tail = b""

    def feed(self, chunk: bytes) -> None:
        if self.model or not chunk:
            return
        data = self._tail + chunk
        found = _MODEL.search(data)
        if found is not None:
            self.model = found.group(1).decode("utf-8", "replace")
        else:
            self._tail = data[-_CARRY:]


def _is_event(body: bytes) -> bool:
    """A real SSE event, not a keep-alive (a comment, or Anthropic's `event: ping`)."""
    return not body.startswith((b":", b"event: ping"))


class MetricsMiddleware:
    """Counts and times every HTTP request except scrapes of /metrics itself.

    The model label is taken from the request body, and only kept for successful answers (2xx):
    a made-up model name would otherwise add a series per request.
    """

    def __init__(self, app: ASGIApp, metrics: FacadeMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] == METRICS_PATH:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # if the app fails before answering, the server answers 500
        stream = False
        first_event = 0.0
        scan = _ModelScan() if scope["method"] == "POST" else None

        async def scanning_receive() -> Message:
            message = await receive()
            if scan is not None and message["type"] == "http.request":
                scan.feed(message.get("body", b""))
            return message

        async def measuring_send(message: Message) -> None:
            nonlocal status, stream, first_event
            if message["type"] == "http.response.start":
                status = message["status"]
                for name, value in message.get("headers", ()):
                    if name.lower() == b"content-type":
                        stream = value.startswith(b"text/event-stream")
                        break
            elif stream and not first_event and message["type"] == "http.response.body":
                body = message.get("body", b"")
                if body and _is_event(body):
                    first_event = time.perf_counter()
            await send(message)

        try:
            await self.app(scope, scanning_receive if scan is not None else receive, measuring_send)
        finally:
            route_obj = scope.get("route")
            route = getattr(route_obj, "path", None) or UNMATCHED_ROUTE
            model = scan.model if scan is not None and scan.model and 200 <= status < 300 else NO_MODEL
            method = scope["method"]
            metrics = self.metrics
            metrics.requests.labels(route, method, str(status), model).inc()
            metrics.duration.labels(route, method).observe(time.perf_counter() - started)
            if first_event:
                metrics.ttft.labels(route, model).observe(first_event - started)


metrics_router = APIRouter()


@metrics_router.get(METRICS_PATH, include_in_schema=False)
async def metrics_endpoint(request: Request) -> Response:
    metrics: FacadeMetrics = request.app.state.metrics
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)
