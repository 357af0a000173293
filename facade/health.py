"""`GET /healthz`: liveness, the state of the link to core, and (under `cursorgate run`) each
process's restarts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from facade.context import core_of, settings_of
from facade.responses import OrjsonResponse

router = APIRouter()


@router.get("/healthz", response_model=None, summary="Liveness, and the state of the link to core")
async def healthz(request: Request) -> Response:
    """Always 200 while the facade runs. `core_link`: "up", "reconnecting" (unreachable for a few
    seconds, e.g. restarting) or "down"; under `cursorgate run`, each process's restart count."""
    core = core_of(request)
    body: dict[str, Any] = {"status": "ok", "core": core.state(), "core_link": core.link()}
    if body["core_link"] != "up":
        body["core_unreachable_s"] = round(core.unreachable_for(), 1)
    supervised = _supervisor_status(settings_of(request).supervisor_status_file)
    if supervised is not None:
        body["processes"] = supervised
    return OrjsonResponse(body)


def _supervisor_status(path: str) -> dict[str, Any] | None:
    """Each child's state, restart count and last exit status (no pids: /healthz is public)."""
    if not path:
        return None
    try:
        children = json.loads(Path(path).read_text())["children"]
        return {
            name: {key: child.get(key) for key in ("state", "restarts", "last_exit", "last_exit_at")}
            for name, child in children.items()
        }
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None  # not written yet, or the supervisor is gone: report without it
