"""`python -m core.combined` (`cursorgate run` with `CURSORGATE_ONE_PROCESS=true`): core and
facade in one process, on one event loop.

Nothing else changes: core still listens on its gRPC port (internal callers and other facades
keep using it), and the facade still reaches core only through that port, as a gRPC client. The
saving is the process boundary: one interpreter, and no wake-up of a second process for each
frame (bench/floor.py: the gRPC hop alone costs about two thirds as much at 64 streams, about the
same at 256; near saturation one event loop uses one core, so two processes serve better: README,
"One process or two"). Like cli.py, this module only composes the two layers; it holds no logic of either.

Shutdown on SIGTERM/SIGINT: the facade drains first (new requests get 503, those in flight
finish), then core stops the way `python -m core` does.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from core.__main__ import prepare, run
from core.config import CoreSettings
from core.observability.tracing import setup_combined_tracing
from core.server import build
from facade.__main__ import DrainingServer, announce, uvicorn_config
from facade.app import create_app
from facade.config import load_settings as load_facade_settings

log = logging.getLogger("cursorgate.core")


class CombinedServer(DrainingServer):
    """The facade's server, except that a caught signal is not raised again when uvicorn is
    done (uvicorn's default, which would end the process before core has stopped)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        with super().capture_signals():
            try:
                yield
            finally:
                self._captured_signals.clear()


async def serve_both(settings: CoreSettings) -> None:
    facade_settings = load_facade_settings()
    core = await build(settings)
    await core.start()
    log.info("core listening on %s, in the facade's process", settings.grpc_address)
    try:
        announce(facade_settings)
        app = create_app(facade_settings)
        server = CombinedServer(
            uvicorn_config(app, facade_settings), app.state.drain, facade_settings.drain_timeout
        )
        await server.serve()
    finally:
        log.info("core draining: %d call(s) in flight", core.gate.in_flight)
        await core.stop(settings.drain_timeout)
        log.info("core stopped")


def main() -> None:
    settings = prepare()
    setup_combined_tracing()
    run(serve_both(settings))


if __name__ == "__main__":
    main()
