"""`python -m facade`: serve the OpenAI REST API over core's gRPC API."""

from __future__ import annotations

import logging
import sys

import uvicorn

from facade.app import create_app
from facade.config import load_settings
from facade.http_server import server_options

# See core/__main__.py: grpcio's poller thread hands every event from core to the loop
# through the GIL; don't let it wait CPython's default 5 ms when the loop is busy.
GIL_SWITCH_INTERVAL_S = 0.0005


def main() -> None:
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
    settings = load_settings()
    level = settings.log_level.upper()
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    print(
        f"cursorgate facade: listening on http://{settings.http_host}:{settings.http_port}/cursor/v1 "
        f"(core gRPC at {settings.core_target})",
        flush=True,
    )
    uvicorn.run(
        create_app(settings),
        host=settings.http_host,
        port=settings.http_port,
        loop="uvloop",
        # No per-request logging on the hot path; a reverse proxy can log requests.
        access_log=False,
        log_level=settings.log_level,
        server_header=False,
        # httptools with a header deadline, a connection cap, keep-alive (facade/http_server.py).
        **server_options(settings),
    )


if __name__ == "__main__":
    main()
