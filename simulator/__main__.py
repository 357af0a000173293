"""`python -m simulator`: the Cursor simulator alone, on hypercorn (HTTP/1.1 and h2c on one port,
as Cursor's edge speaks both; the bidi RPCs need HTTP/2)."""

from __future__ import annotations

import asyncio
import contextlib
import signal

from hypercorn.asyncio import serve
from hypercorn.config import Config

from simulator import h2patches
from simulator.app import create_app
from simulator.config import SimulatorSettings
from simulator.h2cut import ConnectionCut


def hypercorn_config(settings: SimulatorSettings) -> Config:
    config = Config()
    config.bind = [f"{settings.host}:{settings.port}"]
    config.loglevel = settings.log_level.upper()
    config.accesslog = None
    # hypercorn closes an h2 connection after 1000 requests by default, which pyqwest reports as
    # a broken pipe on the call in flight (python-stack.md, P13).
    config.keep_alive_max_requests = 1_000_000
    config.h2_max_concurrent_streams = 10_000
    return config


async def _main(settings: SimulatorSettings) -> None:
    h2patches.install()  # before the first connection
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await serve(ConnectionCut(create_app(settings)), hypercorn_config(settings), shutdown_trigger=stop.wait)  # type: ignore[arg-type]


def main() -> None:
    settings = SimulatorSettings()
    print(
        f"cursorgate simulator: Cursor-like Connect server on http://{settings.host}:{settings.port}",
        flush=True,
    )
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(_main(settings))


if __name__ == "__main__":
    main()
