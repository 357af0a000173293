"""`GET /healthz`: liveness, and the state of the channel to core."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from facade.context import core_of
from facade.responses import OrjsonResponse

router = APIRouter()


@router.get("/healthz", response_model=None, summary="Liveness, and the state of the channel to core")
async def healthz(request: Request) -> Response:
    return OrjsonResponse({"status": "ok", "core": core_of(request).state()})
