"""Cursor's auth endpoints, simulated (agent-protocol.md §6): the PKCE login page and `/auth/poll`,
the OAuth refresh grant on `/oauth/token` (with rotation, reuse detection and Cursor's permanent
error codes), and `/auth/exchange_user_api_key`. Access tokens it issues expire after
CURSORGATE_SIMULATOR_TOKEN_TTL_S, and the chat RPCs refuse expired tokens as Cursor does."""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from dataclasses import dataclass, field

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from simulator.config import SimulatorSettings, make_jwt

DESKTOP_CLIENT_ID = "KbZUR41cY7W6zRSdpSUJ7I7mLYBKOCmB"


@dataclass
class AuthState:
    # Login uuid -> PKCE challenge, once the "user" opened the login page.
    logins: dict[str, str] = field(default_factory=dict)
    refresh_tokens: set[str] = field(default_factory=set)
    used_refresh_tokens: set[str] = field(default_factory=set)
    revoked_api_keys: set[str] = field(default_factory=set)
    # The next N refresh/exchange calls fail with HTTP 503 (a transient outage).
    fail_next: int = 0
    issued: int = 0


def _error(status: int, code: str) -> JSONResponse:
    return JSONResponse({"error": code, "error_description": code.replace("_", " ")}, status_code=status)


def routes(settings: SimulatorSettings, auth: AuthState) -> list[Route]:
    def issue(subject: str) -> dict[str, str]:
        auth.issued += 1
        access = make_jwt(subject, int(time.time() + settings.token_ttl_s), jti=secrets.token_hex(6))
        refresh = "rt_" + secrets.token_urlsafe(24)
        auth.refresh_tokens.add(refresh)
        return {"accessToken": access, "refreshToken": refresh}

    async def login_page(request: Request) -> Response:
        challenge = request.query_params.get("challenge", "")
        login_id = request.query_params.get("uuid", "")
        if not challenge or not login_id:
            return HTMLResponse("<p>Bad login link.</p>", status_code=400)
        auth.logins[login_id] = challenge  # the simulated user signs in at once
        return HTMLResponse("<p>You are signed in to the simulated Cursor. You can close this tab.</p>")

    async def poll(request: Request) -> Response:
        login_id = request.query_params.get("uuid", "")
        verifier = request.query_params.get("verifier", "")
        challenge = auth.logins.get(login_id)
        if challenge is None:
            return Response(status_code=404)  # not yet
        digest = hashlib.sha256(verifier.encode()).digest()
        if base64.urlsafe_b64encode(digest).rstrip(b"=").decode() != challenge:
            return _error(400, "invalid_verifier")
        del auth.logins[login_id]
        return JSONResponse({**issue("auth0|user_login"), "authId": "auth0|user_login"})

    async def oauth_token(request: Request) -> Response:
        body = await request.json()
        if auth.fail_next > 0:
            auth.fail_next -= 1
            return _error(503, "temporarily_unavailable")
        if body.get("grant_type") != "refresh_token":
            return _error(400, "unsupported_grant_type")
        if body.get("client_id") != DESKTOP_CLIENT_ID:
            return _error(401, "invalid_client")
        token = str(body.get("refresh_token", ""))
        if token in auth.used_refresh_tokens:
            return _error(400, "refresh_token_reused")
        if token not in auth.refresh_tokens:
            return _error(400, "invalid_grant")
        auth.refresh_tokens.discard(token)
        auth.used_refresh_tokens.add(token)  # rotated: the old one must not be used again
        tokens = issue("auth0|user_refreshed")
        return JSONResponse({"access_token": tokens["accessToken"], "refresh_token": tokens["refreshToken"]})

    async def exchange(request: Request) -> Response:
        if auth.fail_next > 0:
            auth.fail_next -= 1
            return _error(503, "temporarily_unavailable")
        key = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        if not key.startswith("crsr_") or len(key) < 20 or key in auth.revoked_api_keys:
            return _error(401, "invalid_api_key")
        return JSONResponse(issue("auth0|user_api_key"))

    async def control(request: Request) -> Response:
        body = await request.json()
        if "revoke_api_key" in body:
            auth.revoked_api_keys.add(str(body["revoke_api_key"]))
        if body.get("revoke_refresh_tokens"):
            auth.used_refresh_tokens |= auth.refresh_tokens
            auth.refresh_tokens.clear()
        if "fail_next" in body:
            auth.fail_next = int(body["fail_next"])
        return JSONResponse({"issued": auth.issued})

    return [
        Route("/loginDeepControl", login_page, methods=["GET"]),
        Route("/auth/poll", poll, methods=["GET"]),
        Route("/oauth/token", oauth_token, methods=["POST"]),
        Route("/auth/exchange_user_api_key", exchange, methods=["POST"]),
        Route("/__sim/auth", control, methods=["POST"]),
    ]
