"""Request data that reaches an HTTP/2 stream after its response has ended: dropped, not fatal.

Cursor's Run ends its response (end-stream envelope, END_STREAM) and the client half-closes after
it (agent-protocol.md §2.3, §4.1), so the client's last DATA frame (an empty one with END_STREAM,
or a heartbeat already on its way) can arrive for a stream whose response is over. Real HTTP/2
servers discard it. hypercorn 0.18 forgets a stream once its response is complete, and a DATA
frame for it then raises KeyError in H2Protocol._handle_events (END_STREAM alone is guarded, DATA
is not: pgjones/hypercorn issue 329, fix PRs 312/334 not released). That error ends the
connection's read loop but not the socket: every other stream on the connection gets no more
frames, and the client goes on opening streams on a connection nobody reads. This wraps the
handler so such DATA is acknowledged (its bytes return to the connection's flow-control window)
and dropped before hypercorn looks the stream up. Simulator-only, hypercorn-internal, pinned by
tests/test_concurrent_streams.py.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from h2.events import DataReceived, Event
from hypercorn.protocol.h2 import H2Protocol

_Handler = Callable[[Any, list[Event]], Awaitable[None]]
_MARK = "_cursorgate_late_data"


def install() -> None:
    """Patches hypercorn's H2Protocol once per process."""
    original: _Handler = H2Protocol._handle_events
    if getattr(original, _MARK, False):
        return

    async def handle_events(self: H2Protocol, events: list[Event]) -> None:
        # One event at a time: handling one may end another stream's response, so whether a
        # stream is still known is decided just before its DATA is handed on.
        for event in events:
            if isinstance(event, DataReceived) and event.stream_id not in self.streams:
                self.connection.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                await self._flush()
                continue
            await original(self, [event])

    setattr(handle_events, _MARK, True)
    setattr(H2Protocol, "_handle_events", handle_events)  # noqa: B010 (mypy refuses method assignment)
