"""Turns an image content part (data: URL, http(s) URL or bytes) into Cursor's ImageProto.

Fetching by URL is the one place where a caller makes the gateway open a connection of its
choosing, so it is guarded: the host is resolved once, every address checked, and the connection
made to the checked address (DNS rebinding cannot swap it); each redirect hop is checked the same
way; every fetch has a total deadline; and fetches are bounded per license and per host.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import io
import ipaddress
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextvars import ContextVar

import httpx
from PIL import Image as PILImage
from PIL import UnidentifiedImageError

from aiserver.v1 import chat_pb2 as cursor
from core.errors import GatewayError, invalid
from cursorgate.v1 import chat_pb2

# What Cursor's models accept ([W] adapter: PNG, JPEG, WebP, non-animated GIF).
FORMATS = {"PNG", "JPEG", "WEBP", "GIF"}

MAX_REDIRECTS = 3

# One text for every failure that depends on what the network answered (refused, reset, timed
# out, an HTTP error status, bytes that are no image): telling them apart would make the fetcher
# a port scanner.
FETCH_FAILED = "The image could not be fetched from its URL, or it is not a PNG, JPEG, WebP or GIF image."
NOT_PUBLIC = "Image URLs must point to public hosts."

# Who is fetching (the license id), set by the chat service around a request; fetches are
# bounded per owner so that one license cannot take every connection.
FETCH_OWNER: ContextVar[str] = ContextVar("cursorgate_fetch_owner", default="")

# host, port -> the addresses it resolves to. Injectable so tests (and the rebinding test in
# particular) need no real DNS.
Resolver = Callable[[str, int], Awaitable[list[str]]]


async def system_resolver(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


def is_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


class _Limiter:
    """At most `limit` holders per key at once; keys are dropped when idle (no growth)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._slots: dict[str, tuple[asyncio.Semaphore, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        if self.limit <= 0:
            yield
            return
        semaphore, users = self._slots.get(key, (asyncio.Semaphore(self.limit), 0))
        self._slots[key] = (semaphore, users + 1)
        try:
            async with semaphore:
                yield
        finally:
            semaphore, users = self._slots[key]
            if users <= 1:
                del self._slots[key]
            else:
                self._slots[key] = (semaphore, users - 1)


class ImageLoader:
    def __init__(
        self,
        max_bytes: int,
        fetch_timeout: float,
        http: httpx.AsyncClient | None = None,
        *,
        allow_private: bool = False,
        resolver: Resolver | None = None,
        per_owner: int = 4,
        per_host: int = 8,
    ) -> None:
        self.max_bytes = max_bytes
        # Seconds for the whole fetch: waiting for a slot, every hop, and the last byte.
        self.fetch_timeout = fetch_timeout
        self.allow_private = allow_private
        self._resolve = resolver or system_resolver
        self._http = http
        self._owners = _Limiter(per_owner)
        self._hosts = _Limiter(per_host)

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()

    async def load(self, image: chat_pb2.Image, param: str, uuid: str) -> cursor.ImageProto:
        fetched = False
        if image.HasField("data"):
            data = image.data
        elif image.url.startswith("data:"):
            data = self._decode_data_url(image.url, param)
        elif image.url.startswith(("http://", "https://")):
            data = await self._fetch(image.url, param)
            fetched = True
        else:
            raise invalid("Image URLs must be data: URLs or http(s) URLs.", param)
        if len(data) > self.max_bytes:
            raise invalid(f"The image is larger than {self.max_bytes} bytes.", param)
        width, height = self._dimensions(data, param, fetched)
        return cursor.ImageProto(
            data=data, dimension=cursor.ImageProto.Dimension(width=width, height=height), uuid=uuid
        )

    def _decode_data_url(self, url: str, param: str) -> bytes:
        header, sep, payload = url.partition(",")
        if not sep or ";base64" not in header:
            raise invalid("Image data URLs must be base64 encoded (data:image/png;base64,...).", param)
        if len(payload) > self.max_bytes * 4 // 3 + 4:
            raise invalid(f"The image is larger than {self.max_bytes} bytes.", param)
        try:
            return base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            raise invalid("The image data URL is not valid base64.", param) from None

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            # Redirects are followed by hand so that each hop's address is checked. No keep-alive:
            # connections are made to addresses, and one must never carry another host's request.
            self._http = httpx.AsyncClient(
                follow_redirects=False,
                timeout=self.fetch_timeout,
                limits=httpx.Limits(max_connections=100, max_keepalive_connections=0),
                trust_env=False,
            )
        return self._http

    async def _fetch(self, url: str, param: str) -> bytes:
        return await self.fetch(url, param, max_bytes=self.max_bytes, failed=FETCH_FAILED, what="image")

    async def fetch(
        self,
        url: str,
        param: str,
        *,
        max_bytes: int,
        failed: str,
        what: str,
        oversize: GatewayError | None = None,
    ) -> bytes:
        """The bytes at an http(s) URL under every rule above; `failed` is the one text for any
        failure the network decides, `what` names the thing in the other messages, `oversize` is
        the error for a body over `max_bytes` (default: a 400 saying so)."""
        target = parse_url(url, param, what)
        try:
            async with asyncio.timeout(self.fetch_timeout), self._owners.hold(FETCH_OWNER.get()):
                for _ in range(MAX_REDIRECTS + 1):
                    async with self._hosts.hold(target.host):
                        address = await self._checked_address(target, param, failed, what)
                        request = self._pinned_request(target, address)
                        response = await self._client().send(request, stream=True)
                        try:
                            if response.is_redirect and "location" in response.headers:
                                target = parse_url(
                                    str(target.join(response.headers["location"])), param, what
                                )
                                continue
                            return await self._read(response, param, max_bytes, failed, what, oversize)
                        finally:
                            await response.aclose()
                raise invalid(f"Fetching the {what} took too many redirects.", param)
        except TimeoutError:
            raise invalid(failed, param) from None
        except (httpx.HTTPError, httpx.InvalidURL, OSError, ValueError):
            raise invalid(failed, param) from None

    async def _checked_address(self, url: httpx.URL, param: str, failed: str, what: str) -> str:
        """The one address this hop connects to; every address the name has must be public.

        A name that does not resolve is refused (fail closed), with the generic text."""
        host = url.host
        try:
            literal: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(host)
        except ValueError:
            literal = None
        if literal is not None:
            addresses = [literal]
        else:
            try:
                resolved = await self._resolve(host, url.port or (443 if url.scheme == "https" else 80))
                addresses = [ipaddress.ip_address(a.split("%", 1)[0]) for a in resolved]
            except (OSError, ValueError, UnicodeError):
                raise invalid(failed, param) from None
            if not addresses:
                raise invalid(failed, param)
        if not self.allow_private and not all(is_public(a) for a in addresses):
            raise invalid(
                NOT_PUBLIC if what == "image" else f"{what.capitalize()} URLs must point to public hosts.",
                param,
            )
        return str(addresses[0])

    @staticmethod
    def _pinned_request(url: httpx.URL, address: str) -> httpx.Request:
        """A GET to `address` that still says `url`'s host: in Host, and in TLS's SNI (which is
        also the name the certificate is checked against)."""
        host_header = url.netloc.decode("ascii")
        pinned = url.copy_with(host=address)
        extensions = {"sni_hostname": url.host} if url.scheme == "https" else {}
        return httpx.Request("GET", pinned, headers={"host": host_header}, extensions=extensions)

    @staticmethod
    async def _read(
        response: httpx.Response,
        param: str,
        max_bytes: int,
        failed: str,
        what: str,
        oversize: GatewayError | None,
    ) -> bytes:
        if response.status_code != 200:
            raise invalid(failed, param)
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > max_bytes:
                raise oversize or invalid(f"The {what} is larger than {max_bytes} bytes.", param)
            chunks.append(chunk)
        return b"".join(chunks)

    @staticmethod
    def _dimensions(data: bytes, param: str, fetched: bool) -> tuple[int, int]:
        try:
            with PILImage.open(io.BytesIO(data)) as img:
                if img.format not in FORMATS:
                    if fetched:
                        raise invalid(FETCH_FAILED, param)
                    raise invalid(
                        f"Unsupported image format {img.format}; use PNG, JPEG, WebP or GIF.", param
                    )
                return img.size
        except (UnidentifiedImageError, OSError, PILImage.DecompressionBombError):
            raise invalid(FETCH_FAILED if fetched else "The image could not be decoded.", param) from None


def parse_url(url: str, param: str, what: str = "image") -> httpx.URL:
    """The URL, or a 400 that names the part that is wrong (httpx raises on e.g. 0177.0.0.1)."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError) as exc:
        part = "host" if "host" in str(exc).lower() or "address" in str(exc).lower() else "URL"
        if "port" in str(exc).lower():
            part = "port"
        raise invalid(f"The {what} URL could not be parsed: its {part} is not valid.", param) from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise invalid(f"The {what} URL could not be parsed: its host is not valid.", param)
    if parsed.port is not None and not 0 < parsed.port < 65536:
        raise invalid(f"The {what} URL could not be parsed: its port is not valid.", param)
    return parsed
