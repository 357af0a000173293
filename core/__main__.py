"""`python -m core`: the gRPC core alone."""

from __future__ import annotations

import asyncio
import logging

from core.config import CoreSettings
from core.server import serve


def main() -> None:
    settings = CoreSettings()
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - uvloop ships with uvicorn[standard]
        pass
    asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
