"""Issue 14, findings 2, 3 and 7: the image fetcher must not reach inside, nor be held up.

No real DNS: the loader takes a resolver, and these tests answer for it. Servers are real
sockets on loopback (allowed with allow_private) or httpx's MockTransport (which records where
the loader would have connected, without connecting).
"""

from __future__ import annotations

import asyncio
import io
import ssl
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from PIL import Image

from core.errors import GatewayError
from core.upstream.images import FETCH_FAILED, FETCH_OWNER, NOT_PUBLIC, ImageLoader
from cursorgate.v1 import chat_pb2
from tests.certs import TestCA
from tests.procs import Stack

PUBLIC = "8.8.8.8"  # only ever recorded by a MockTransport, never contacted


def png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (3, 2)).save(out, format="PNG")
    return out.getvalue()


PNG = png()


class Resolver:
    """Answers from a table, counting lookups; a list of answers is served in turn (rebinding)."""

    def __init__(self, table: dict[str, list[list[str]] | Exception]) -> None:
        self.table = table
        self.lookups: list[str] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.lookups.append(host)
        answers = self.table[host]
        if isinstance(answers, Exception):
            raise answers
        return answers.pop(0) if len(answers) > 1 else answers[0]


def image(url: str) -> chat_pb2.Image:
    return chat_pb2.Image(url=url)


async def load(loader: ImageLoader, url: str) -> tuple[int, int]:
    proto = await loader.load(image(url), "messages[0].content[0].image_url", "1")
    return proto.dimension.width, proto.dimension.height


async def refused(loader: ImageLoader, url: str) -> str:
    with pytest.raises(GatewayError) as caught:
        await load(loader, url)
    assert caught.value.param == "messages[0].content[0].image_url"
    return caught.value.message


class Recorder:
    """A MockTransport handler: records each request, answers from `answers` by path."""

    def __init__(self, answers: dict[str, httpx.Response] | None = None) -> None:
        self.requests: list[httpx.Request] = []
        self.answers = answers or {}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.answers.get(request.url.path, httpx.Response(200, content=PNG))


def mock_loader(recorder: Recorder, resolver: Resolver, **options: object) -> ImageLoader:
    http = httpx.AsyncClient(transport=httpx.MockTransport(recorder))
    return ImageLoader(1024 * 1024, 5.0, http, resolver=resolver, **options)  # type: ignore[arg-type]


# --- finding 2: DNS rebinding, fail-closed resolution, every hop, generic texts -------------


async def test_rebinding_cannot_swap_the_checked_address() -> None:
    """The name answers a public address for the check, then loopback: the fetch must go to the
    address that was checked, not to a second lookup's answer."""
    resolver = Resolver({"rebind.test": [[PUBLIC], ["127.0.0.1"]]})
    recorder = Recorder()
    loader = mock_loader(recorder, resolver)
    assert await load(loader, "https://rebind.test/cat.png") == (3, 2)
    assert resolver.lookups == ["rebind.test"], "one lookup per hop"
    [sent] = recorder.requests
    assert sent.url.host == PUBLIC
    assert sent.headers["host"] == "rebind.test"
    assert sent.extensions["sni_hostname"] == "rebind.test"


async def test_resolution_failure_fails_closed() -> None:
    resolver = Resolver({"nowhere.test": OSError("Name or service not known")})
    recorder = Recorder()
    assert await refused(mock_loader(recorder, resolver), "http://nowhere.test/x.png") == FETCH_FAILED
    assert recorder.requests == []


@pytest.mark.parametrize(
    "answer", [["127.0.0.1"], [PUBLIC, "10.0.0.7"], ["::1"], ["::ffff:127.0.0.1"], ["169.254.169.254"]]
)
async def test_any_private_address_is_refused(answer: list[str]) -> None:
    recorder = Recorder()
    loader = mock_loader(recorder, Resolver({"mixed.test": [answer]}))
    assert await refused(loader, "http://mixed.test/x.png") == NOT_PUBLIC
    assert recorder.requests == []


async def test_every_redirect_hop_is_checked_and_pinned() -> None:
    resolver = Resolver({"cdn.test": [[PUBLIC]], "inner.test": [["10.1.2.3"]]})
    recorder = Recorder({"/x.png": httpx.Response(302, headers={"location": "http://inner.test/secret"})})
    assert await refused(mock_loader(recorder, resolver), "http://cdn.test/x.png") == NOT_PUBLIC
    assert [r.url.host for r in recorder.requests] == [PUBLIC]
    assert resolver.lookups == ["cdn.test", "inner.test"]


class _State:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.hosts: list[str] = []
        self.open: dict[str, int] = {}
        self.peak: dict[str, int] = {}
        self.release = threading.Event()


class _Handler(BaseHTTPRequestHandler):
    state: _State

    def do_GET(self) -> None:
        state = self.state
        with state.lock:
            state.hosts.append(self.headers.get("host", ""))
        if self.path == "/ok.png":
            self._send(200, PNG)
        elif self.path == "/text":
            self._send(200, b"<html>an admin console</html>")
        elif self.path == "/slow.png":
            self.send_response(200)
            self.send_header("content-length", "60")
            self.end_headers()
            for _ in range(60):  # 1 byte every 0.2 s: each read is quick, the whole is not
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(0.2)
        elif self.path.startswith("/hold"):
            who = self.path.partition("who=")[2] or self.headers.get("host", "")
            with state.lock:
                state.open[who] = state.open.get(who, 0) + 1
                state.peak[who] = max(state.peak.get(who, 0), state.open[who])
            state.release.wait(15)
            with state.lock:
                state.open[who] -= 1
            self._send(200, PNG)
        else:
            self._send(404, b"not here")

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def serve(context: ssl.SSLContext | None = None) -> tuple[ThreadingHTTPServer, _State]:
    state = _State()
    handler = type("Handler", (_Handler,), {"state": state})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    if context is not None:
        server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, state


@pytest.fixture
def server() -> Iterator[tuple[int, _State]]:
    httpd, state = serve()
    yield int(httpd.server_address[1]), state
    state.release.set()
    httpd.shutdown()
    httpd.server_close()


def local_loader(timeout: float = 5.0, **options: object) -> ImageLoader:
    resolver = Resolver({name: [["127.0.0.1"]] for name in ("img.test", "a.test", "b.test")})
    return ImageLoader(1024 * 1024, timeout, allow_private=True, resolver=resolver, **options)  # type: ignore[arg-type]


async def test_tls_fetch_keeps_sni_and_checks_the_certificate(tmp_path: Path) -> None:
    """Connecting to the checked address still verifies the name's certificate, via SNI."""
    ca = TestCA(tmp_path)
    files = ca.issue("img.test", hosts=("img.test",))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(files.cert, files.key)
    httpd, state = serve(context)
    port = httpd.server_address[1]
    try:
        client = ssl.create_default_context(cafile=str(ca.ca))
        http = httpx.AsyncClient(verify=client)
        resolver = Resolver({"img.test": [["127.0.0.1"]], "other.test": [["127.0.0.1"]]})
        loader = ImageLoader(1024 * 1024, 5.0, http, allow_private=True, resolver=resolver)
        assert await load(loader, f"https://img.test:{port}/ok.png") == (3, 2)
        assert state.hosts == [f"img.test:{port}"]
        # A name the certificate does not cover fails, generically.
        assert await refused(loader, f"https://other.test:{port}/ok.png") == FETCH_FAILED
        await loader.aclose()
    finally:
        httpd.shutdown()
        httpd.server_close()


async def test_network_failures_read_alike(server: tuple[int, _State]) -> None:
    """Refused port, HTTP 404, and a page that is no image: one text, no port-scan oracle."""
    port, _ = server
    loader = local_loader()
    closed = ImageLoader(1024, 1.0, allow_private=True, resolver=Resolver({"img.test": [["127.0.0.1"]]}))
    messages = {
        await refused(closed, "http://img.test:1/x.png"),
        await refused(loader, f"http://img.test:{port}/missing.png"),
        await refused(loader, f"http://img.test:{port}/text"),
    }
    assert messages == {FETCH_FAILED}
    await loader.aclose()


# --- finding 3: a total deadline, and bounds per license and per host ----------------------


async def test_trickled_image_hits_the_total_deadline(server: tuple[int, _State]) -> None:
    port, _ = server
    loader = local_loader(timeout=1.0)
    started = time.monotonic()
    assert await refused(loader, f"http://img.test:{port}/slow.png") == FETCH_FAILED
    assert time.monotonic() - started < 4.0, "the timeout must bound the whole fetch, not each read"
    await loader.aclose()


async def _wait_for(condition: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out waiting"
        await asyncio.sleep(0.05)


async def test_fetches_are_bounded_per_license(server: tuple[int, _State]) -> None:
    port, state = server
    loader = local_loader(timeout=20.0, per_owner=2, per_host=100)

    async def fetch(owner: str, n: int) -> tuple[int, int]:
        FETCH_OWNER.set(owner)
        return await load(loader, f"http://img.test:{port}/hold{n}?who={owner}")

    greedy = [asyncio.create_task(fetch("lic_greedy", n)) for n in range(6)]
    await _wait_for(lambda: state.open.get("lic_greedy", 0) == 2)
    other = asyncio.create_task(fetch("lic_other", 99))
    # Another license is not queued behind the greedy one.
    await _wait_for(lambda: state.open.get("lic_other", 0) == 1)
    await asyncio.sleep(0.3)
    assert state.open["lic_greedy"] == 2
    state.release.set()
    assert all(r == (3, 2) for r in await asyncio.gather(*greedy, other))
    assert state.peak["lic_greedy"] == 2
    await loader.aclose()


async def test_fetches_are_bounded_per_host(server: tuple[int, _State]) -> None:
    port, state = server
    loader = local_loader(timeout=20.0, per_owner=100, per_host=2)
    a = [asyncio.create_task(load(loader, f"http://a.test:{port}/hold")) for _ in range(5)]
    await _wait_for(lambda: state.open.get(f"a.test:{port}", 0) == 2)
    b = asyncio.create_task(load(loader, f"http://b.test:{port}/hold"))
    await _wait_for(lambda: state.open.get(f"b.test:{port}", 0) == 1)
    await asyncio.sleep(0.3)
    assert state.open[f"a.test:{port}"] == 2
    state.release.set()
    await asyncio.gather(*a, b)
    assert state.peak[f"a.test:{port}"] == 2
    await loader.aclose()


# --- finding 7: a URL httpx cannot parse is a 400 naming the part ---------------------------


@pytest.mark.parametrize(
    ("url", "part"),
    [("http://0177.0.0.1/x", "host"), ("http://[zz]/x", "host"), ("http://img.test:99999/x", "port")],
)
async def test_unparsable_url_is_400_naming_the_part(url: str, part: str) -> None:
    message = await refused(local_loader(), url)
    assert f"its {part}" in message


def test_unparsable_url_over_http_is_400(stack: Stack) -> None:
    content = [{"type": "image_url", "image_url": {"url": "http://0177.0.0.1/x"}}]
    response = httpx.post(
        f"{stack.base_url}/chat/completions",
        json={"model": "gpt-5.2", "messages": [{"role": "user", "content": content}]},
        headers={"Authorization": f"Bearer {stack.license}"},
        timeout=30,
    )
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == "messages[0].content[0].image_url"
    assert "host" in error["message"]


@pytest.mark.parametrize(
    "host",
    ["localhost", "127.1", "0x7f000001", "2130706433", "0.0.0.0", "[::1]", "[::ffff:127.0.0.1]", "[::]"],
)
async def test_loopback_spellings_never_connect(server: tuple[int, _State], host: str) -> None:
    """With the system resolver (numeric forms and /etc/hosts only): refused before connecting."""
    port, state = server
    loader = ImageLoader(1024 * 1024, 5.0)
    message = await refused(loader, f"http://{host}:{port}/ok.png")
    assert message == NOT_PUBLIC or message.startswith("The image URL could not be parsed"), message
    assert state.hosts == []
    await loader.aclose()
