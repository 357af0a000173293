"""Cursor's account and identity endpoints, simulated: DashboardService/GetCurrentPeriodUsage and
ServerConfigService/GetServerConfig (Connect+JSON), GET /auth/full_stripe_profile (REST), and the
CLI's public install script. Shapes follow docs/cursor-protocol.md and agent-protocol.md §2; the
numbers are fixed."""

from __future__ import annotations

import time

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from simulator.control import SimState
from simulator.service import JWT

CYCLE_MS = 30 * 24 * 3600 * 1000
SIM_CONFIG_VERSION = "sim-config-7f3a"
# Newer than the gateway's default, so discovery visibly moves the CLI identity on.
SIM_CLI_BUILD = "cli-2026.11.20-5e1f2a9"


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
        token = _token(request, state)
        if token is None:
            return _unauthenticated()
        scripted = state.behaviour(token).plan_spent
        spent = 123 if scripted is None else scripted  # cents
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

    async def server_config(request: Request) -> Response:
        if _token(request, state) is None:
            return _unauthenticated()
        return JSONResponse(
            {
                "configVersion": SIM_CONFIG_VERSION,
                # The simulator is its own agent host; only https:// hosts are taken from here.
                "agentUrlConfig": {"agentUrl": "https://agent.simulator.invalid"},
            }
        )

    async def install(request: Request) -> Response:
        script = (
            f'#!/bin/sh\n# Cursor CLI installer (simulated)\nVERSION="{SIM_CLI_BUILD}"\necho "$VERSION"\n'
        )
        return Response(script, media_type="text/x-shellscript")

    return [
        Route("/aiserver.v1.DashboardService/GetCurrentPeriodUsage", usage, methods=["POST"]),
        Route("/aiserver.v1.ServerConfigService/GetServerConfig", server_config, methods=["POST"]),
        Route("/install", install, methods=["GET"]),
        Route("/auth/full_stripe_profile", profile, methods=["GET"]),
    ]
