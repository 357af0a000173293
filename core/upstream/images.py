"""Turns an image content part (data: URL, http(s) URL or bytes) into Cursor's ImageProto."""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import ipaddress
import socket

import httpx
from PIL import Image as PILImage
from PIL import UnidentifiedImageError

from aiserver.v1 import chat_pb2 as cursor
from core.errors import invalid
from cursorgate.v1 import chat_pb2

# What Cursor's models accept ([W] adapter: PNG, JPEG, WebP, non-animated GIF).
FORMATS = {"PNG", "JPEG", "WEBP", "GIF"}


MAX_REDIRECTS = 3


async def _public_host(url: httpx.URL) -> bool:
    """True when every address the host resolves to is public (no SSRF into private networks)."""
    host = url.host
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, url.port or 443, type=socket.SOCK_STREAM)
    except OSError:
        return True  # unresolvable: the fetch fails on its own, with a clear message
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if not address.is_global or address.is_multicast:
            return False
    return True


class ImageLoader:
    def __init__(
        self,
        max_bytes: int,
        fetch_timeout: float,
        http: httpx.AsyncClient | None = None,
        *,
        allow_private: bool = False,
    ) -> None:
        self.max_bytes = max_bytes
        self.fetch_timeout = fetch_timeout
        self.allow_private = allow_private
        self._http = http

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()

    async def load(self, image: chat_pb2.Image, param: str, uuid: str) -> cursor.ImageProto:
        if image.HasField("data"):
            data = image.data
        elif image.url.startswith("data:"):
            data = self._decode_data_url(image.url, param)
        elif image.url.startswith(("http://", "https://")):
            data = await self._fetch(image.url, param)
        else:
            raise invalid("Image URLs must be data: URLs or http(s) URLs.", param)
        if len(data) > self.max_bytes:
            raise invalid(f"The image is larger than {self.max_bytes} bytes.", param)
        width, height = self._dimensions(data, param)
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

    async def _fetch(self, url: str, param: str) -> bytes:
        if self._http is None:
            # Redirects are followed by hand so that each hop's address is checked.
            self._http = httpx.AsyncClient(timeout=self.fetch_timeout, follow_redirects=False)
        target = httpx.URL(url)
        try:
            for _ in range(MAX_REDIRECTS + 1):
                if not self.allow_private and not await _public_host(target):
                    raise invalid("Image URLs must point to public hosts.", param)
                async with self._http.stream("GET", target) as response:
                    if response.is_redirect and "location" in response.headers:
                        target = target.join(response.headers["location"])
                        continue
                    return await self._read(response, param)
            raise invalid("Fetching the image took too many redirects.", param)
        except httpx.HTTPError as exc:
            raise invalid(f"Fetching the image failed: {type(exc).__name__}.", param) from None

    async def _read(self, response: httpx.Response, param: str) -> bytes:
        if response.status_code != 200:
            raise invalid(f"Fetching the image failed with HTTP {response.status_code}.", param)
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > self.max_bytes:
                raise invalid(f"The image is larger than {self.max_bytes} bytes.", param)
            chunks.append(chunk)
        return b"".join(chunks)

    @staticmethod
    def _dimensions(data: bytes, param: str) -> tuple[int, int]:
        try:
            with PILImage.open(io.BytesIO(data)) as img:
                if img.format not in FORMATS:
                    raise invalid(
                        f"Unsupported image format {img.format}; use PNG, JPEG, WebP or GIF.", param
                    )
                return img.size
        except (UnidentifiedImageError, OSError, PILImage.DecompressionBombError):
            raise invalid("The image could not be decoded.", param) from None
