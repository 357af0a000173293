"""One request's entry in the request log and its metrics, measured by the chat service as it runs."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

from core.accounts import TRACE, RequestTrace
from core.licenses import License
from core.metrics import UNCHECKED_MODEL, CoreMetrics
from core.store.repo import RequestEntry
from cursorgate.v1 import chat_pb2

RequestSink = Callable[[RequestEntry], None]
# Events that carry the answer: the first of them marks the time to first token.
_ANSWER_EVENTS = frozenset({"text", "reasoning", "tool_call"})


class Meter:
    """Started when a call arrives, finished (in a `finally`) when it ends, whatever the way."""

    def __init__(self, sink: RequestSink | None, stream: bool, metrics: CoreMetrics | None = None) -> None:
        self.sink = sink
        self.stream = stream
        self.metrics = metrics
        self.started = time.monotonic()
        self.first_answer_at = 0.0
        self.wall = time.time()
        self.license: License | None = None
        # Stays so if the caller goes away before the end.
        self.outcome = "cancelled"
        self.usage = chat_pb2.Usage()
        self.trace = RequestTrace()
        # AccountPool.lease fills the trace in: it runs inside this call's context.
        self._reset = TRACE.set(self.trace)

    def observe(self, event: chat_pb2.ChatEvent) -> None:
        kind = event.WhichOneof("event")
        if not self.first_answer_at and kind in _ANSWER_EVENTS:
            self.first_answer_at = time.monotonic()
        elif kind == "usage":
            self.usage.CopyFrom(event.usage)

    def finish(self, model: str, requested: str = "") -> None:
        """`model`: the model that served; `requested`: what the caller asked for, if different."""
        with contextlib.suppress(ValueError):  # finished from another context: nothing to undo
            TRACE.reset(self._reset)
        latency = time.monotonic() - self.started
        if self.metrics is not None:
            # Refused calls are counted too, but under no caller-chosen model name.
            self.metrics.record_request(
                outcome=self.outcome,
                model=model if self.license is not None else UNCHECKED_MODEL,
                stream=self.stream,
                duration_s=latency,
                ttft_s=self.first_answer_at - self.started if self.first_answer_at else None,
                tokens_in=self.usage.prompt_tokens,
                tokens_out=self.usage.completion_tokens,
            )
        # Calls without a valid license are not logged: anyone could fill the log with them.
        if self.sink is None or self.license is None:
            return
        self.sink(
            RequestEntry(
                time=self.wall,
                license_id=self.license.id,
                license_name=self.license.name,
                model=model,
                requested_model=requested if requested != model else "",
                account_id=self.trace.account_id,
                latency_ms=int(latency * 1000),
                prompt_tokens=self.usage.prompt_tokens,
                completion_tokens=self.usage.completion_tokens,
                outcome=self.outcome,
                stream=self.stream,
            )
        )
