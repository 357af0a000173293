"""`python -m simulator`: the Cursor simulator alone."""

from __future__ import annotations

import uvicorn

from simulator.app import create_app
from simulator.config import SimulatorSettings


def main() -> None:
    settings = SimulatorSettings()
    print(
        f"cursorgate simulator: Cursor-like Connect server on http://{settings.host}:{settings.port}",
        flush=True,
    )
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=False,
        loop="uvloop",
        http="httptools",
    )


if __name__ == "__main__":
    main()
