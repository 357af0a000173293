"""Plays a plan out in time: the pauses, the fault after N frames, the open-stream counters.
Shared by every simulated RPC; each renders the neutral frames on its own wire."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextvars import ContextVar

from connectrpc.code import Code
from connectrpc.errors import ConnectError

from simulator.control import SimState
from simulator.errors import cursor_error
from simulator.script import Frame, Plan

# Per request: the fault the middleware must apply to the HTTP response (see app.py).
FAULT: ContextVar[dict[str, object]] = ContextVar("sim_fault")


async def paced(plan: Plan, state: SimState) -> AsyncIterator[Frame]:
    """The plan's frames in time, then its fault (raised as Cursor would end the stream)."""
    fault = FAULT.get({})
    state.open_streams += 1
    try:
        if plan.first_delay_s:
            await asyncio.sleep(plan.first_delay_s)
        for n, frame in enumerate(plan.frames):
            if plan.fault and n == plan.after:
                break
            if plan.delay_s:
                await asyncio.sleep(plan.delay_s)
            yield frame
        else:
            if not plan.fault:
                return
        await _fault(plan, fault)
    except (asyncio.CancelledError, GeneratorExit):
        state.cancelled_streams += 1
        raise
    finally:
        state.open_streams -= 1


async def _fault(plan: Plan, fault: dict[str, object]) -> None:
    if plan.fault == "error":
        if plan.error == "unavailable":
            fault["http_status"] = 503
        raise cursor_error(plan.error, plan.retry_after)
    if plan.fault == "stall":
        await asyncio.Event().wait()
    if plan.fault in ("break", "malformed"):
        fault["mode"] = plan.fault
        # One more frame for the middleware to cut or corrupt.
        raise ConnectError(Code.INTERNAL, "fault injected")
