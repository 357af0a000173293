"""The three ways into a stream, each timing the arrival of every content chunk.

* direct: the simulator through the project's own Connect client (what core itself uses);
* core:   core's cursorgate.v1 ChatService.StreamChat over grpcio;
* full:   the facade's /chat/completions with stream=true, read as SSE with httpx.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Protocol

import grpc
import httpx
import orjson
import pyqwest

from aiserver.v1 import chat_pb2 as cursor
from aiserver.v1.chat_connect import ChatServiceClient
from bench.stats import now
from core.config import DEFAULT_CLIENT_VERSION
from core.upstream.headers import ClientIdentity, cursor_headers
from core.upstream.images import ImageLoader
from core.upstream.legacy.request import Environment, build_request
from cursorgate.v1 import chat_pb2, chat_pb2_grpc
from facade.core_client import CHANNEL_OPTIONS

MODEL = "gpt-5.2"
TIMEOUT_S = 300.0


@dataclass(slots=True)
class StreamRecord:
    start: float
    # perf_counter() at the arrival of each non-empty content chunk.
    times: list[float] = field(default_factory=list)
    error: str | None = None


class PathClient(Protocol):
    name: str

    async def run(self, prompt: str, rec: StreamRecord, hold: asyncio.Event | None = None) -> None:
        """One stream; with `hold`, wait for it after the first content chunk, then close."""

    async def aclose(self) -> None: ...


def chat_request(prompt: str) -> chat_pb2.ChatRequest:
    return chat_pb2.ChatRequest(
        model=MODEL,
        messages=[chat_pb2.Message(role=chat_pb2.ROLE_USER, content=[chat_pb2.ContentPart(text=prompt)])],
    )


class Direct:
    """Connect over HTTP/1.1 to the simulator, configured as core.upstream.client configures it."""

    name = "direct"

    def __init__(self, url: str, token: str) -> None:
        self._transport = pyqwest.HTTPTransport(read_timeout=TIMEOUT_S, enable_otel=False)
        self._client = ChatServiceClient(url, http_client=pyqwest.Client(self._transport))
        self._token = token
        self._identity = ClientIdentity(client_version=DEFAULT_CLIENT_VERSION)
        self._bodies: dict[str, cursor.StreamUnifiedChatRequestWithTools] = {}

    async def _body(self, prompt: str) -> cursor.StreamUnifiedChatRequestWithTools:
        body = self._bodies.get(prompt)
        if body is None:
            loader = ImageLoader(1 << 20, 10.0)
            body = await build_request(chat_request(prompt), Environment(DEFAULT_CLIENT_VERSION), loader)
            self._bodies[prompt] = body
        return body

    async def run(self, prompt: str, rec: StreamRecord, hold: asyncio.Event | None = None) -> None:
        body = await self._body(prompt)
        headers = cursor_headers(self._token, self._identity)
        stream = self._client.stream_unified_chat_with_tools(body, headers=headers, timeout_ms=300_000)
        times = rec.times
        async for frame in stream:
            if frame.stream_unified_chat_response.text:
                times.append(now())
                if hold is not None:
                    await hold.wait()
                    break
        await stream.aclose()  # type: ignore[attr-defined]

    async def aclose(self) -> None:
        await self._transport.aclose()


class Core:
    """grpcio.aio on one channel, with the facade's channel options."""

    name = "core"

    def __init__(self, target: str, license_key: str) -> None:
        self._channel = grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS)
        self._stub = chat_pb2_grpc.ChatServiceStub(self._channel)
        self._metadata = (("authorization", f"Bearer {license_key}"),)
        self._requests: dict[str, chat_pb2.ChatRequest] = {}

    async def run(self, prompt: str, rec: StreamRecord, hold: asyncio.Event | None = None) -> None:
        request = self._requests.get(prompt)
        if request is None:
            request = self._requests[prompt] = chat_request(prompt)
        call = self._stub.StreamChat(request, metadata=self._metadata, timeout=TIMEOUT_S)
        times = rec.times
        try:
            async for event in call:
                if event.WhichOneof("event") == "text":
                    times.append(now())
                    if hold is not None:
                        await hold.wait()
                        break
        finally:
            call.cancel()

    async def aclose(self) -> None:
        await self._channel.close()


class Full:
    """The OpenAI endpoint through the facade, SSE read raw (no SDK objects in the timing loop)."""

    name = "full"

    def __init__(self, base_url: str, license_key: str) -> None:
        self._http = httpx.AsyncClient(
            base_url=base_url,
            headers={"authorization": f"Bearer {license_key}", "content-type": "application/json"},
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=4096),
            timeout=httpx.Timeout(TIMEOUT_S, connect=60.0, pool=60.0),
        )
        self._bodies: dict[str, bytes] = {}

    async def run(self, prompt: str, rec: StreamRecord, hold: asyncio.Event | None = None) -> None:
        body = self._bodies.get(prompt)
        if body is None:
            payload = {"model": MODEL, "stream": True, "messages": [{"role": "user", "content": prompt}]}
            body = self._bodies[prompt] = orjson.dumps(payload)
        times = rec.times
        async with self._http.stream("POST", "/chat/completions", content=body) as response:
            if response.status_code != 200:
                await response.aread()
                raise RuntimeError(f"HTTP {response.status_code}: {response.text[:200]}")
            buffer = b""
            async for data in response.aiter_raw():
                t = now()
                buffer += data
                while (cut := buffer.find(b"\n\n")) >= 0:
                    event, buffer = buffer[:cut], buffer[cut + 2 :]
                    # Content chunks only: not the role chunk (content ""), finish or [DONE].
                    if b'"content":"' in event and b'"content":""' not in event:
                        times.append(t)
                if hold is not None and times:
                    await hold.wait()
                    return

    async def aclose(self) -> None:
        await self._http.aclose()


def make_client(
    path: str, sim_url: str, token: str, grpc_target: str, facade_url: str, license_key: str
) -> PathClient:
    """A client for one path; call inside the running loop (grpc.aio channels bind to it)."""
    if path == "direct":
        return Direct(sim_url, token)
    if path == "core":
        return Core(grpc_target, license_key)
    return Full(facade_url, license_key)
