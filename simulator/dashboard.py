"""Cursor's account endpoints, simulated: DashboardService/GetCurrentPeriodUsage (Connect+JSON)
and GET /auth/full_stripe_profile (REST). Shapes follow docs/cursor-protocol.md, "Usage and
account"; the numbers are fixed."""

from __future__ import annotations

import time

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from simulator.control import SimState
from simulator.service import JWT

CYCLE_MS = 30 * 24 * 3600 * 1000


def _token(request: Request, state: SimState) -> str | None:
    auth = request.headers.get("authorization", "")
    token = auth.removeprefix("Bearer ").strip() if auth.startswith("Bearer ") else ""
    if not JWT.match(token) or state.behaviour(token).reject:
        return None
    return token


def _unauthenticated() -> Response:
    return JSONResponse({"code": "unauthenticated", "message": "Not logged in"}, status_code=401)


def routes(state: SimState) -> list[Route]:
    async def usage(request: Request) -> Response:
        if _token(request, state) is None:
            return _unauthenticated()
        spent = 123  # cents
        start = int(time.time() * 1000) // CYCLE_MS * CYCLE_MS
        return JSONResponse(
            {
                # int64 travels as a JSON string in Connect+JSON.
                "billingCycleStart": str(start),
                "billingCycleEnd": str(start + CYCLE_MS),
                "planUsage": {
                    "totalSpend": spent,
                    "includedSpend": spent,
                    "remaining": 2000 - spent,
                    "limit": 2000,
                    "totalPercentUsed": spent / 20,
                },
                "spendLimitUsage": {"limitType": "user"},
                "enabled": True,
                "displayMessage": "Simulated usage",
            }
        )

    async def profile(request: Request) -> Response:
        if _token(request, state) is None:
            return _unauthenticated()
        return JSONResponse(
            {
                "membershipType": "pro",
                "individualMembershipType": "pro",
                "subscriptionStatus": "active",
                "daysRemainingOnTrial": 0,
                "isTeamMember": False,
            }
        )

    return [
        Route("/aiserver.v1.DashboardService/GetCurrentPeriodUsage", usage, methods=["POST"]),
        Route("/auth/full_stripe_profile", profile, methods=["GET"]),
    ]
