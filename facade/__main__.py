"""`python -m facade`: serve the OpenAI REST API over core's gRPC API."""

from __future__ import annotations

import asyncio
import logging
import socket
import sys
from types import FrameType

import uvicorn
from fastapi import FastAPI
from uvicorn.config import LOGGING_CONFIG

from core.observability.logs import configure_logging
from core.observability.tracing import setup_facade_tracing
from facade.app import create_app
from facade.config import FacadeSettings, load_settings
from facade.drain import Drain
from facade.http_server import server_options

# See core/__main__.py: grpcio's poller thread hands every event from core to the loop
# through the GIL; don't let it wait CPython's default 5 ms when the loop is busy.
GIL_SWITCH_INTERVAL_S = 0.0005


# Seconds uvicorn itself waits for connections after the drain, before it cancels what is left.
SHUTDOWN_GRACE_S = 1

log = logging.getLogger("cursorgate.facade")


class DrainingServer(uvicorn.Server):
    """uvicorn, with a drain before its own shutdown: on the first SIGTERM/SIGINT the app turns
    not-ready and refuses new requests (503) while those in flight finish, up to `timeout`
    seconds; then uvicorn stops listening and exits. A second signal stops at once."""

    def __init__(self, config: uvicorn.Config, drain: Drain, timeout: float) -> None:
        super().__init__(config)
        self.drain = drain
        self.drain_timeout = timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        self._drainer: asyncio.Task[None] | None = None

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.drain.draining or self._loop is None or self.drain_timeout <= 0:
            super().handle_exit(sig, frame)
            return
        self._captured_signals.append(sig)  # uvicorn re-raises it after its shutdown
        self.drain.draining = True
        # A signal handler runs between two bytecodes of the loop's thread: schedule, don't run.
        self._loop.call_soon_threadsafe(self._start_drain)

    def _start_drain(self) -> None:
        self._drainer = asyncio.create_task(self._drain())

    async def _drain(self) -> None:
        log.info("draining: %d request(s) in flight, up to %.0f s", self.drain.in_flight, self.drain_timeout)
        try:
            async with asyncio.timeout(self.drain_timeout):
                await self.drain.wait_idle()
        except TimeoutError:
            log.warning("drain timeout: %d request(s) still in flight are cut", self.drain.in_flight)
        self.should_exit = True


def uvicorn_config(app: FastAPI, settings: FacadeSettings) -> uvicorn.Config:
    """The facade's HTTP server settings (also used by `python -m core.combined`)."""
    json_logs = settings.log_format == "json"
    return uvicorn.Config(
        app,
        host=settings.http_host,
        port=settings.http_port,
        loop="uvloop",
        # No per-request logging on the hot path; a reverse proxy can log requests.
        access_log=False,
        log_level=settings.log_level,
        server_header=False,
        # httptools with a header deadline, a connection cap, keep-alive (facade/http_server.py).
        **server_options(settings),
        timeout_graceful_shutdown=SHUTDOWN_GRACE_S,
        # JSON logs: uvicorn's own loggers propagate to our root handler instead of its format.
        log_config=None if json_logs else LOGGING_CONFIG,
    )


def announce(settings: FacadeSettings) -> None:
    banner = (
        f"cursorgate facade: listening on http://{settings.http_host}:{settings.http_port}/cursor/v1 "
        f"(core gRPC at {settings.core_target})"
    )
    if settings.log_format == "json":
        log.info("%s", banner)  # every line of a JSON log is JSON
    else:
        print(banner, flush=True)


def main() -> None:
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
    settings = load_settings()
    configure_logging(settings.log_level.upper(), settings.log_format)
    announce(settings)
    setup_facade_tracing()
    app = create_app(settings)
    DrainingServer(uvicorn_config(app, settings), app.state.drain, settings.drain_timeout).run()


if __name__ == "__main__":
    main()
