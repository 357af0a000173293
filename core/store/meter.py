"""One request's entry in the request log and its metrics, measured by the chat service as it runs."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

from core.licensing.licenses import License
from core.observability.metrics import UNCHECKED_MODEL, CoreMetrics
from core.pool.accounts import TRACE, RequestTrace
from core.store.repo import REJECTED, RequestEntry
from cursorgate.v1 import chat_pb2

RequestSink = Callable[[RequestEntry], None]
# The log's text columns are this wide; a refused caller's model name may be anything.
MAX_LOGGED_NAME = 200
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
        # The license the key belongs to, once known (also when it was then refused), and
        # whether the call passed every check (metrics name only admitted models).
        self.license: License | None = None
        self.admitted = False
        # The presented key's first characters, logged for calls no license was found for.
        self.key_prefix = ""
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
                model=model if self.admitted else UNCHECKED_MODEL,
                stream=self.stream,
                duration_s=latency,
                ttft_s=self.first_answer_at - self.started if self.first_answer_at else None,
                tokens_in=self.usage.prompt_tokens,
                tokens_out=self.usage.completion_tokens,
            )
        # A call with no license is logged only when the checks refused it (under its key's
        # prefix); the facade's lockout after repeated 401s per address bounds how many there are.
        if self.sink is None or (self.license is None and self.outcome not in REJECTED):
            return
        # At least 1 ms when an answer came (0 means none did): the simulator answers in less.
        ttft_ms = max(1, int((self.first_answer_at - self.started) * 1000)) if self.first_answer_at else 0
        self.sink(
            RequestEntry(
                time=self.wall,
                license_id=self.license.id if self.license else "",
                license_name=self.license.name if self.license else "",
                model=model[:MAX_LOGGED_NAME],
                requested_model=requested[:MAX_LOGGED_NAME] if requested != model else "",
                account_id=self.trace.account_id,
                latency_ms=int(latency * 1000),
                prompt_tokens=self.usage.prompt_tokens,
                completion_tokens=self.usage.completion_tokens,
                outcome=self.outcome,
                stream=self.stream,
                key_prefix="" if self.license else self.key_prefix,
                ttft_ms=ttft_ms,
            )
        )
