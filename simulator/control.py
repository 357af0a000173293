"""Per-token behaviour and the request log, steerable over HTTP by tests (`/__sim/...`)."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from core.chat.catalog import SEED_MODELS


@dataclass
class TokenBehaviour:
    # Refuse the token as Cursor does for a bad or expired one.
    reject: bool = False
    # Answer every chat with a rate-limit error until this time (unix seconds).
    rate_limited_until: float = 0.0
    retry_after: float = 0.0
    # Models AvailableModels reports for the token (None: the seed list).
    models: list[str] | None = None
    # The next N chat calls fail with HTTP 503 before any frame (a flaky connection).
    fail_next: int = 0
    # Dialects refused for this token with "Update Required" (None: the simulator's setting).
    retired: list[str] | None = None
    # Models served only in Max mode (ERROR_MAX_MODE_REQUIRED without ModelDetails.max_mode).
    max_only: list[str] = field(default_factory=list)
    # Models without Max mode (a request with max_mode set is refused).
    no_max: list[str] = field(default_factory=list)
    # Plan spend this cycle in cents, of the 2000 the plan includes (None: the usual 123).
    plan_spent: int | None = None


@dataclass
class SimState:
    tokens: dict[str, TokenBehaviour] = field(default_factory=dict)
    requests: list[dict[str, object]] = field(default_factory=list)
    # Streams currently open (tests check that cancellation reaches upstream).
    open_streams: int = 0
    cancelled_streams: int = 0

    def behaviour(self, token: str) -> TokenBehaviour:
        # Keyed by the token's last 16 characters: tests name accounts without handling whole tokens.
        return self.tokens.get(token[-16:], TokenBehaviour())

    def is_retired(self, token: str, dialect: str, default: frozenset[str]) -> bool:
        retired = self.behaviour(token).retired
        return dialect in (default if retired is None else retired)

    def models_for(self, token: str) -> list[str]:
        models = self.behaviour(token).models
        return list(SEED_MODELS) if models is None else models


def routes(state: SimState) -> list[Route]:
    async def set_token(request: Request) -> Response:
        body = await request.json()
        key = str(body.pop("token"))[-16:]
        behaviour = TokenBehaviour(**body)
        if behaviour.rate_limited_until and behaviour.rate_limited_until < 1e9:
            behaviour.rate_limited_until = time.time() + behaviour.rate_limited_until  # relative seconds
        state.tokens[key] = behaviour
        return JSONResponse(asdict(behaviour))

    async def get_requests(request: Request) -> Response:
        return JSONResponse(state.requests)

    async def reset(request: Request) -> Response:
        state.tokens.clear()
        state.requests.clear()
        state.cancelled_streams = 0
        return JSONResponse({})

    async def stats(request: Request) -> Response:
        return JSONResponse(
            {"open_streams": state.open_streams, "cancelled_streams": state.cancelled_streams}
        )

    return [
        Route("/__sim/tokens", set_token, methods=["POST"]),
        Route("/__sim/requests", get_requests, methods=["GET"]),
        Route("/__sim/reset", reset, methods=["POST"]),
        Route("/__sim/stats", stats, methods=["GET"]),
    ]
