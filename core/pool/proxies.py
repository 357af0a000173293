"""Outbound proxies for calls to Cursor: checking an operator's proxy URL, masking its credentials
for display, and remembering which proxies are down (a failed proxy is the proxy's fault, never
the account's: its accounts are skipped until the retry time, then tried again)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

SCHEMES = ("http", "https", "socks5", "socks5h")
DEFAULT_PORTS = {"http": 80, "https": 443, "socks5": 1080, "socks5h": 1080}
MAX_PROXY_CHARS = 2000
# A proxy that does not accept a TCP connection within this long counts as down.
REACH_TIMEOUT_S = 2.0


class InvalidProxy(ValueError):
    """The message is safe to show: it never repeats the URL (it may carry a password)."""


def parse_proxy(value: str) -> str:
    """The proxy URL as it will be used, or "" for none; InvalidProxy when it cannot work."""
    value = value.strip()
    if not value:
        return ""
    if len(value) > MAX_PROXY_CHARS or any(c.isspace() or ord(c) < 32 for c in value):
        raise InvalidProxy("proxy: not a URL (too long, or it contains spaces or control characters).")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 (raises ValueError for a port out of range or not a number)
    except ValueError:
        raise InvalidProxy("proxy: not a URL with a valid port.") from None
    if parts.scheme.lower() not in SCHEMES:
        raise InvalidProxy("proxy: expected an http://, https://, socks5:// or socks5h:// URL.")
    if not parts.hostname:
        raise InvalidProxy("proxy: the URL must name the proxy's host.")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise InvalidProxy("proxy: a proxy URL has no path, query or fragment.")
    return value


def mask_proxy(url: str) -> str:
    """`socks5://user:secret@host:1080` -> `socks5://user:***@host:1080`; no credentials: as is."""
    if not url:
        return ""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "(unreadable proxy URL)"
    if "@" not in parts.netloc:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return f"{parts.scheme}://{user}:***@{host}"


def proxy_endpoint(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    return parts.hostname or "", parts.port or DEFAULT_PORTS.get(scheme, 1080)


async def reachable(url: str) -> bool:
    """Whether the proxy accepts a TCP connection: what tells a dead proxy from a Cursor outage."""
    host, port = proxy_endpoint(url)
    try:
        async with asyncio.timeout(REACH_TIMEOUT_S):
            _, writer = await asyncio.open_connection(host, port)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


def proxy_id(url: str) -> str:
    """A stable name for a proxy that does not carry its credentials: what replicas exchange."""
    return hashlib.sha256(url.encode()).hexdigest()[:32]


@dataclass(slots=True)
class ProxyDown:
    until: float
    reason: str


class ProxyHealth:
    """Which proxies are down and until when (in memory; with Redis, core/shared/state.py tells the
    other core replicas of each outage found here)."""

    def __init__(self, retry_after_s: float = 30.0) -> None:
        self.retry_after_s = retry_after_s
        self._down: dict[str, ProxyDown] = {}
        # Told of each outage this process finds: (url, until, reason).
        self.on_down: Callable[[str, float, str], None] | None = None

    def mark_down(self, url: str, reason: str) -> float:
        until = time.time() + self.retry_after_s
        self._down[url] = ProxyDown(until, reason)
        if self.on_down is not None:
            self.on_down(url, until, reason)
        return until

    def mark_down_from_peer(self, url: str, until: float, reason: str) -> bool:
        """Another replica found the proxy down until `until`. False (nothing changed) when this
        process already holds it down at least that long."""
        current = self._down.get(url)
        if current is not None and current.until >= until:
            return False
        self._down[url] = ProxyDown(until, reason)
        return True

    def mark_up(self, url: str) -> None:
        self._down.pop(url, None)

    def down(self, url: str, now: float | None = None) -> ProxyDown | None:
        """The outage still in force for this proxy ("" is never down here: the gateway's own
        route is not an account's proxy)."""
        if not url:
            return None
        state = self._down.get(url)
        if state is None or state.until <= (time.time() if now is None else now):
            return None
        return state

    def last(self, url: str) -> ProxyDown | None:
        """The latest outage, over or not (for the admin page's "why")."""
        return self._down.get(url) if url else None


class ClientsByProxy:
    """httpx clients for Cursor's JSON endpoints (auth, usage, server config): the gateway's own
    (CURSORGATE_UPSTREAM_PROXY or direct), and one per account proxy, made on first use."""

    def __init__(self, default_proxy: str = "", **options: Any) -> None:
        self._default_proxy = default_proxy
        self._options = options
        self._clients: dict[str, httpx.AsyncClient] = {}

    def get(self, proxy: str = "") -> httpx.AsyncClient:
        url = proxy or self._default_proxy
        client = self._clients.get(url)
        if client is None:
            client = self._clients[url] = httpx.AsyncClient(proxy=url or None, **self._options)
        return client

    async def aclose(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.aclose()
