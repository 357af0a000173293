"""Optional OpenTelemetry tracing: one trace from the facade's HTTP request (FastAPI's own server
spans) through core's gRPC call (grpc instrumentation) to each upstream attempt (UpstreamSpan).
On when `OTEL_EXPORTER_OTLP_ENDPOINT` (or its traces-only form) is set and the `otel` extra is
installed; the standard `OTEL_*` variables configure the rest (protocol, headers, sampler,
`OTEL_SERVICE_NAME`...). Off, it costs one branch per upstream attempt. Spans carry ids, models
and failure classes, never tokens or keys.
"""

from __future__ import annotations

import logging
import os
from types import TracebackType
from typing import Any, Final

log = logging.getLogger("cursorgate.tracing")

ENDPOINT_VARS: Final = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
UPSTREAM_SPAN: Final = "cursor.upstream"
# Paths not traced: probes and scrapes would drown the traces that matter.
UNTRACED_PATHS: Final = frozenset({"/healthz", "/readyz", "/metrics"})

_active = False


def active() -> bool:
    return _active


def untraced(scope: Any) -> bool:
    """FastAPI telemetry's `exclude`: no spans for probes and scrapes."""
    return scope.get("path") in UNTRACED_PATHS


def setup_tracing(default_service: str) -> bool:
    """Installs the tracer provider and OTLP exporter for this process; False if tracing is off."""
    global _active
    if not any(os.environ.get(name) for name in ENDPOINT_VARS):
        return False
    try:
        from opentelemetry import trace
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        log.warning(
            "OTEL_EXPORTER_OTLP_ENDPOINT is set but OpenTelemetry is not installed "
            "(pip install 'cursorgate[otel]'): tracing stays off"
        )
        return False
    service = os.environ.get("OTEL_SERVICE_NAME") or default_service
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    _active = True
    log.info("tracing on: spans of %s go to the OTLP endpoint", service)
    return True


def setup_core_tracing() -> None:
    """Before the gRPC server is made: its calls continue the facade's trace."""
    if setup_tracing("cursorgate-core"):
        from opentelemetry.instrumentation.grpc import GrpcAioInstrumentorServer

        GrpcAioInstrumentorServer().instrument()  # type: ignore[no-untyped-call]


def setup_facade_tracing() -> None:
    """Before the channel to core is made: its calls carry the HTTP request's trace. FastAPI's
    own telemetry makes the HTTP server spans once a tracer provider is set (facade/app.py)."""
    if setup_tracing("cursorgate-facade"):
        from opentelemetry.instrumentation.grpc import GrpcAioInstrumentorClient

        GrpcAioInstrumentorClient().instrument()  # type: ignore[no-untyped-call]


def setup_combined_tracing() -> None:
    """`python -m core.combined`: one provider, and both ends of the gRPC hop instrumented."""
    if setup_tracing("cursorgate"):
        from opentelemetry.instrumentation.grpc import GrpcAioInstrumentorClient, GrpcAioInstrumentorServer

        GrpcAioInstrumentorServer().instrument()  # type: ignore[no-untyped-call]
        GrpcAioInstrumentorClient().instrument()  # type: ignore[no-untyped-call]


class UpstreamSpan:
    """A span around one upstream attempt (a child of the core call's span), ended however the
    attempt ends; an UpstreamError marks it failed with its failure class."""

    def __init__(self, attributes: dict[str, Any]) -> None:
        self._attributes = attributes
        self._span: Any = None

    def __enter__(self) -> UpstreamSpan:
        if _active:
            from opentelemetry import trace

            self._span = trace.get_tracer("cursorgate").start_span(UPSTREAM_SPAN, attributes=self._attributes)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._span is None:
            return
        from opentelemetry.trace import Status, StatusCode

        failure = getattr(getattr(exc, "failure", None), "value", None)
        if failure is not None:
            self._span.set_attribute("cursorgate.failure", failure)
            self._span.set_status(Status(StatusCode.ERROR, failure))
        elif exc is not None and not isinstance(exc, GeneratorExit):
            self._span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
        self._span.end()
