"""Turns an image content part (data: URL, http(s) URL or bytes) into Cursor's ImageProto."""

from __future__ import annotations

import base64
import binascii
import io

import httpx
from aiserver.v1 import chat_pb2 as cursor
from cursorgate.v1 import chat_pb2
from PIL import Image as PILImage
from PIL import UnidentifiedImageError

from core.errors import invalid

# What Cursor's models accept ([W] adapter: PNG, JPEG, WebP, non-animated GIF).
FORMATS = {"PNG", "JPEG", "WEBP", "GIF"}


class ImageLoader:
    def __init__(self, max_bytes: int, fetch_timeout: float, http: httpx.AsyncClient | None = None) -> None:
        self.max_bytes = max_bytes
        self.fetch_timeout = fetch_timeout
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
            self._http = httpx.AsyncClient(timeout=self.fetch_timeout, follow_redirects=True)
        try:
            async with self._http.stream("GET", url) as response:
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
        except httpx.HTTPError as exc:
            raise invalid(f"Fetching the image failed: {type(exc).__name__}.", param) from None

    @staticmethod
    def _dimensions(data: bytes, param: str) -> tuple[int, int]:
        try:
            with PILImage.open(io.BytesIO(data)) as img:
                if img.format not in FORMATS:
                    raise invalid(
                        f"Unsupported image format {img.format}; use PNG, JPEG, WebP or GIF.", param
                    )
                return img.size
        except (UnidentifiedImageError, OSError):
            raise invalid("The image could not be decoded.", param) from None
