"""`python -m core`: the gRPC core alone."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Coroutine
from typing import Any

from core.api.grpc_tls import TLSConfigError, server_credentials
from core.config import CoreSettings, admin_key_problem, load_settings
from core.observability.logs import configure_logging
from core.observability.tracing import setup_core_tracing
from core.server import serve
from core.store.secretbox import SecretKeyError

# How long a thread may wait for the GIL before the running one must hand it over (CPython's
# default: 5 ms). Every upstream chunk reaches the event loop from a pyqwest (tokio) thread,
# and every gRPC completion from grpcio's poller thread; each must take the GIL to hand its
# result over, and with the loop busy it waited up to the full 5 ms. 0.5 ms raised the chunks/s
# the core carries by about 40% in bench/ (burst, 16 streams) at the same CPU per chunk.
GIL_SWITCH_INTERVAL_S = 0.0005

QUIET_LOGGERS = ("aiosqlite", "sqlalchemy.engine", "sqlalchemy.pool", "asyncpg")


def prepare() -> CoreSettings:
    """What every way of running core does first: check the settings (exit 2 with a clear
    message), set up logging, the GIL switch interval and uvloop."""
    settings = load_settings()
    problem = admin_key_problem(settings)
    if problem is None:
        try:
            server_credentials(settings)  # reads the files now: a bad path is a clear message
        except TLSConfigError as err:
            problem = str(err)
    if problem is not None:
        print(f"cursorgate core: {problem}", file=sys.stderr, flush=True)
        sys.exit(2)
    configure_logging(settings.log_level, settings.log_format)
    # These log SQL parameters at DEBUG, account tokens among them: never below WARNING.
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - uvloop ships with uvicorn[standard]
        pass
    return settings


def run(main: Coroutine[Any, Any, None]) -> None:
    try:
        asyncio.run(main)
    except SecretKeyError as err:  # a clear word, not a traceback: nothing was changed
        logging.getLogger("cursorgate.core").error("%s", err)
        raise SystemExit(2) from None


def main() -> None:
    settings = prepare()
    setup_core_tracing()
    run(serve(settings))


if __name__ == "__main__":
    main()
