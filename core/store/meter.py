"""One request's entry in the request log, measured by the chat service as it runs."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

from core.accounts import TRACE, RequestTrace
from core.licenses import License
from core.store.repo import RequestEntry
from cursorgate.v1 import chat_pb2

RequestSink = Callable[[RequestEntry], None]


class Meter:
    """Started when a call arrives, finished (in a `finally`) when it ends, whatever the way."""

    def __init__(self, sink: RequestSink | None, stream: bool) -> None:
        self.sink = sink
        self.stream = stream
        self.started = time.monotonic()
        self.wall = time.time()
        self.license: License | None = None
        # Stays so if the caller goes away before the end.
        self.outcome = "cancelled"
        self.usage = chat_pb2.Usage()
        self.trace = RequestTrace()
        # AccountPool.lease fills the trace in: it runs inside this call's context.
        self._reset = TRACE.set(self.trace)

    def observe(self, event: chat_pb2.ChatEvent) -> None:
        if event.WhichOneof("event") == "usage":
            self.usage.CopyFrom(event.usage)

    def finish(self, model: str, requested: str = "") -> None:
        """`model`: the model that served; `requested`: what the caller asked for, if different."""
        with contextlib.suppress(ValueError):  # finished from another context: nothing to undo
            TRACE.reset(self._reset)
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
                latency_ms=int((time.monotonic() - self.started) * 1000),
                prompt_tokens=self.usage.prompt_tokens,
                completion_tokens=self.usage.completion_tokens,
                outcome=self.outcome,
                stream=self.stream,
            )
        )
