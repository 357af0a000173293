"""OpenTelemetry: one trace from the facade's HTTP request through core's gRPC call to the upstream
attempt, exported over OTLP/HTTP to a collector this test runs on loopback."""

from __future__ import annotations

import gzip
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from tests.procs import Stack, free_port, start_stack

MODEL = "claude-4.5-sonnet"


class Collector:
    """An OTLP/HTTP trace receiver: every span posted to /v1/traces, with its service name."""

    def __init__(self) -> None:
        self.spans: list[tuple[str, Span]] = []
        self.lock = threading.Lock()
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                if self.headers.get("content-encoding") == "gzip":
                    body = gzip.decompress(body)
                request = ExportTraceServiceRequest.FromString(body)
                with collector.lock:
                    for resource_spans in request.resource_spans:
                        service = next(
                            a.value.string_value
                            for a in resource_spans.resource.attributes
                            if a.key == "service.name"
                        )
                        for scope_spans in resource_spans.scope_spans:
                            collector.spans += [(service, span) for span in scope_spans.spans]
                reply = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: Any) -> None:
                pass

        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def traced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, Collector]]:
    collector = Collector()
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{collector.port}",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
    }
    stack = start_stack(tmp_path_factory.mktemp("tracing"), env)
    yield stack, collector
    stack.stop()
    collector.close()


def wait_for(collector: Collector, check: Any, timeout: float = 20) -> list[tuple[str, Span]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with collector.lock:
            spans = list(collector.spans)
        if check(spans):
            return spans
        time.sleep(0.1)
    raise AssertionError(f"spans never arrived: {[(s, sp.name) for s, sp in collector.spans]}")


def upstream_chain(spans: list[tuple[str, Span]]) -> list[tuple[str, Span]] | None:
    """The upstream attempt and its ancestors up to the trace's root, with their services; None
    while one has not arrived (spans are exported in batches as each ends, children first)."""
    by_id = {s.span_id: (service, s) for service, s in spans}
    for service, span in spans:
        if span.name != "cursor.upstream":
            continue
        chain = [(service, span)]
        while chain[-1][1].parent_span_id in by_id:
            chain.append(by_id[chain[-1][1].parent_span_id])
        if not chain[-1][1].parent_span_id:
            return chain
    return None


def test_one_trace_from_facade_through_core_to_upstream(traced: tuple[Stack, Collector]) -> None:
    stack, collector = traced
    response = httpx.post(
        f"{stack.base_url}/chat/completions",
        json={"model": MODEL, "stream": True, "messages": [{"role": "user", "content": "trace me"}]},
        headers={"authorization": f"Bearer {stack.license}"},
        timeout=30,
    )
    assert response.status_code == 200 and "data: [DONE]" in response.text

    spans = wait_for(collector, lambda spans: upstream_chain(spans) is not None)
    chain = upstream_chain(spans)
    assert chain is not None

    # Up from the upstream attempt: core's gRPC server span, the facade's gRPC client span, then
    # (through FastAPI's own endpoint span) the facade's HTTP server span, the trace's root.
    (service, upstream), (core_service, core_call), (facade_service, facade_call), *ancestors = chain
    assert service == "cursorgate-core"
    assert {s.trace_id for _, s in chain} == {upstream.trace_id}
    assert (core_service, core_call.kind) == ("cursorgate-core", Span.SPAN_KIND_SERVER)
    assert core_call.name == "/cursorgate.v1.ChatService/StreamChat"
    assert (facade_service, facade_call.kind) == ("cursorgate-facade", Span.SPAN_KIND_CLIENT)
    assert ancestors and all(service == "cursorgate-facade" for service, _ in ancestors)
    root = ancestors[-1][1]
    assert root.kind == Span.SPAN_KIND_SERVER
    assert root.name == "POST /cursor/v1/chat/completions"

    attributes = {a.key: a.value for a in upstream.attributes}
    assert attributes["cursorgate.model"].string_value == MODEL
    assert attributes["cursorgate.attempt"].int_value == 1

    # No secret in any span: neither the license nor the Cursor token.
    dump = b"".join(s.SerializeToString() for _, s in spans)
    assert stack.license.encode() not in dump
    assert stack.token.encode() not in dump


def test_probes_are_not_traced(traced: tuple[Stack, Collector]) -> None:
    stack, collector = traced
    for path in ("/healthz", "/readyz", "/metrics"):
        assert httpx.get(f"{stack.root_url}{path}").status_code == 200
    time.sleep(1)  # several export intervals
    with collector.lock:
        names = [s.name for service, s in collector.spans if service == "cursorgate-facade"]
    assert not [n for n in names if any(p in n for p in ("healthz", "readyz", "metrics"))]
