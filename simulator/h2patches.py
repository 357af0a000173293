"""Two defects of hypercorn 0.18's HTTP/2 server that stall every stream of a connection, patched
for the simulator (hypercorn-internal, simulator-only; pinned by tests/test_concurrent_streams.py
and tests/test_simulator_h2.py). Either one ends the connection's read loop with an exception but
leaves the socket open, so every other stream on it gets no more frames, and the client goes on
opening streams on a connection nobody reads.

* Late request data. Cursor's Run ends its response (end-stream envelope, END_STREAM) and the
  client half-closes after it (agent-protocol.md §2.3, §4.1), so the client's last DATA frame (an
  empty one with END_STREAM, or a heartbeat already on its way) can arrive for a stream whose
  response is over. Real HTTP/2 servers discard it. hypercorn forgets a stream once its response
  is complete, and a DATA frame for it then raises KeyError (END_STREAM alone is guarded, DATA is
  not: pgjones/hypercorn issue 329, fix PRs 312/334 unreleased). Such DATA is now acknowledged
  (its bytes go back to the connection's flow-control window) and dropped.
* Streams past 999. hypercorn advertises `h2_max_concurrent_streams` (10,000 here) but schedules
  its sends through a `priority.PriorityTree` built with that library's default limit of 1,000
  entries, the root included: the 1,000th concurrent stream raises TooManyStreamsError. The tree
  is now sized to the advertised limit.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from h2.events import DataReceived, Event
from hypercorn.protocol.h2 import H2Protocol
from priority.priority import PriorityTree

_MARK = "_cursorgate_patched"


def install() -> None:
    """Patches hypercorn's H2Protocol once per process, before its first connection."""
    original_events: Callable[[Any, list[Event]], Awaitable[None]] = H2Protocol._handle_events
    if getattr(original_events, _MARK, False):
        return
    original_init: Callable[..., None] = H2Protocol.__init__

    async def handle_events(self: H2Protocol, events: list[Event]) -> None:
        # One event at a time: handling one may end another stream's response, so whether a
        # stream is still known is decided just before its DATA is handed on.
        for event in events:
            if isinstance(event, DataReceived) and event.stream_id not in self.streams:
                self.connection.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                await self._flush()
                continue
            await original_events(self, [event])

    def init(self: H2Protocol, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        # + 1: the tree counts its root.
        self.priority = PriorityTree(maximum_streams=self.config.h2_max_concurrent_streams + 1)

    setattr(handle_events, _MARK, True)
    setattr(H2Protocol, "_handle_events", handle_events)  # noqa: B010 (mypy refuses method assignment)
    setattr(H2Protocol, "__init__", init)  # noqa: B010
