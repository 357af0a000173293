"""Cursor's auth endpoints, as the CLI uses them (agent-protocol.md §6): PKCE login (open
`loginDeepControl`, poll `/auth/poll`), the OAuth `refresh_token` grant on `/oauth/token`, and
`/auth/exchange_user_api_key` for `crsr_` user API keys. Answers become `Tokens` or `AuthError`;
no token ever reaches a log line or an error message."""

from __future__ import annotations

import base64
import hashlib
import secrets
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx

from core.config import CoreSettings
from core.pool.proxies import ClientsByProxy

# OAuth answers that mean the refresh token is dead for good (agent-protocol.md §6).
PERMANENT = frozenset(
    {
        "invalid_grant",
        "refresh_token_expired",
        "refresh_token_reused",
        "refresh_token_invalidated",
        "invalid_client",
    }
)
MAX_ANSWER_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class Tokens:
    access_token: str
    refresh_token: str = ""


class AuthError(Exception):
    """`permanent`: retrying cannot help (the account must be disabled). The message names
    Cursor's error code at most, never a credential."""

    def __init__(self, message: str, *, permanent: bool, status: int | None = None) -> None:
        super().__init__(message)
        self.permanent = permanent
        # The HTTP status Cursor answered with; None when it was not reached.
        self.status = status


@dataclass(frozen=True, slots=True)
class LoginStart:
    url: str
    uuid: str
    verifier: str


def is_api_key(value: str) -> bool:
    return value.strip().startswith("crsr_")


class CursorAuth:
    def __init__(self, settings: CoreSettings, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.settings = settings
        # Per proxy: an account's login and renewals go through the account's own proxy.
        self._http = ClientsByProxy(
            settings.upstream_proxy,
            base_url=(settings.auth_url or settings.upstream_url).rstrip("/"),
            timeout=20.0,
            transport=transport,
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    def start_login(self) -> LoginStart:
        verifier = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        login_id = str(uuid.uuid4())
        query = urlencode(
            {"challenge": challenge, "uuid": login_id, "mode": "login", "redirectTarget": "cli"}
        )
        url = f"{self.settings.login_url.rstrip('/')}/loginDeepControl?{query}"
        return LoginStart(url=url, uuid=login_id, verifier=verifier)

    async def poll_login(self, start: LoginStart, proxy: str = "") -> Tokens | None:
        """One poll: None while the user has not finished logging in (Cursor answers 404)."""
        response = await self._request(
            "GET", "/auth/poll", proxy, params={"uuid": start.uuid, "verifier": start.verifier}
        )
        if response.status_code == 404:
            return None
        return _tokens(self._json(response, "login"))

    async def refresh(self, refresh_token: str, proxy: str = "") -> Tokens:
        body = {
            "grant_type": "refresh_token",
            "client_id": self.settings.oauth_client_id,
            "refresh_token": refresh_token,
        }
        response = await self._request("POST", "/oauth/token", proxy, json=body)
        tokens = _tokens(self._json(response, "refresh"))
        # Cursor may rotate the refresh token; when it does not, the old one stays valid.
        return Tokens(tokens.access_token, tokens.refresh_token or refresh_token)

    async def exchange_api_key(self, api_key: str, proxy: str = "") -> Tokens:
        headers = {"authorization": f"Bearer {api_key.strip()}"}
        response = await self._request("POST", "/auth/exchange_user_api_key", proxy, json={}, headers=headers)
        return _tokens(self._json(response, "API key exchange"))

    async def _request(self, method: str, path: str, proxy: str, **kwargs: Any) -> httpx.Response:
        try:
            return await self._http.get(proxy).request(method, path, **kwargs)
        except httpx.HTTPError as err:
            raise AuthError(
                f"Cursor's auth endpoint is unreachable ({type(err).__name__})", permanent=False
            ) from None

    def _json(self, response: httpx.Response, what: str) -> dict[str, Any]:
        data: Any = None
        if len(response.content) <= MAX_ANSWER_BYTES:
            try:
                data = response.json()
            except ValueError:
                data = None
        if response.status_code == 200 and isinstance(data, dict):
            return data
        code = ""
        if isinstance(data, dict):
            raw = data.get("error")
            code = raw if isinstance(raw, str) else str(data.get("code", ""))
        code = code if code.replace("_", "").isalnum() and len(code) <= 60 else ""
        permanent = code in PERMANENT or response.status_code in (401, 403)
        detail = f" ({code})" if code else ""
        raise AuthError(
            f"Cursor refused the {what}: HTTP {response.status_code}{detail}",
            permanent=permanent,
            status=response.status_code,
        )


def _tokens(data: dict[str, Any]) -> Tokens:
    access = data.get("accessToken") or data.get("access_token")
    refresh = data.get("refreshToken") or data.get("refresh_token") or ""
    if not isinstance(access, str) or access.count(".") != 2:
        raise AuthError("Cursor's answer carried no access token", permanent=False)
    return Tokens(access, refresh if isinstance(refresh, str) else "")
