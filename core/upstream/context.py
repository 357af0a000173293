"""What every dialect shares: settings, the HTTP clients to Cursor, the image and file loaders,
identities."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pyqwest

from core.config import DEFAULT_UPSTREAM_URL, CoreSettings
from core.pool.accounts import Account
from core.upstream.compression import FastGzip
from core.upstream.files import FileLoader
from core.upstream.headers import ClientIdentity
from core.upstream.images import ImageLoader

log = logging.getLogger("cursorgate.upstream")

T = TypeVar("T")


def _transport(
    settings: CoreSettings, http_version: pyqwest.HTTPVersion | None, proxy: str = ""
) -> pyqwest.HTTPTransport:
    return pyqwest.HTTPTransport(
        tls_include_system_certs=True,
        http_version=http_version,
        connect_timeout=settings.upstream_connect_timeout,
        # Backstop for a dead peer; the driver's per-frame watchdog is what callers see.
        read_timeout=settings.upstream_idle_timeout + 5,
        pool_idle_timeout=90.0,
        enable_otel=False,
        # An account's own proxy, else CURSORGATE_UPSTREAM_PROXY (http, https, socks5, socks5h);
        # neither: the usual HTTP(S)_PROXY environment applies, as for any HTTP client.
        proxy=proxy or settings.upstream_proxy or None,
    )


@dataclass(frozen=True, slots=True)
class Route:
    """The two HTTP clients of one way out to Cursor (the gateway's, or one account proxy's)."""

    http: pyqwest.Client
    http2: pyqwest.Client


@dataclass
class UpstreamContext:
    settings: CoreSettings
    # Legacy chat and unary calls: ALPN over TLS, HTTP/1.1 for http:// or when forced
    # (pyqwest's HTTP/2 can die under many small frames, python-stack.md P14).
    http: pyqwest.Client
    # Bidi chat (RunInference, agent Run): HTTP/2 always; prior-knowledge h2c for http://.
    http2: pyqwest.Client
    images: ImageLoader
    files: FileLoader
    gzip: FastGzip
    # What discovery learned (GetServerConfig, the CLI install script); "" while unknown.
    config_version: str = ""
    discovered_cli_version: str = ""
    discovered_agent_url: str = ""
    # Clients per account proxy URL, and the stubs built on them (see `stub`).
    _routes: dict[str, Route] = field(default_factory=dict)
    _stubs: dict[tuple[str, str], Any] = field(default_factory=dict)

    @classmethod
    def create(cls, settings: CoreSettings) -> UpstreamContext:
        h1 = pyqwest.HTTPVersion.HTTP1 if settings.upstream_http1 else None
        if settings.upstream_http1:
            log.info("CURSORGATE_UPSTREAM_HTTP1 applies to the legacy dialect and unary calls only")
        transports = (_transport(settings, h1), _transport(settings, pyqwest.HTTPVersion.HTTP2))
        images = ImageLoader(
            settings.image_max_bytes,
            settings.image_fetch_timeout,
            allow_private=settings.image_fetch_private,
            per_owner=settings.image_fetch_per_license,
            per_host=settings.image_fetch_per_host,
        )
        return cls(
            settings=settings,
            http=pyqwest.Client(transports[0]),
            http2=pyqwest.Client(transports[1]),
            images=images,
            files=FileLoader(images, settings.file_max_bytes),
            gzip=FastGzip(),  # the default wire ("gzip,identity"), decompressed in C
        )

    async def aclose(self) -> None:
        await self.images.aclose()

    # --- the way out, per account ---

    def route(self, account: Account) -> Route:
        """The clients for this account's calls: through its own proxy when it has one."""
        if not account.proxy:
            return Route(self.http, self.http2)
        route = self._routes.get(account.proxy)
        if route is None:
            h1 = pyqwest.HTTPVersion.HTTP1 if self.settings.upstream_http1 else None
            route = self._routes[account.proxy] = Route(
                pyqwest.Client(_transport(self.settings, h1, account.proxy)),
                pyqwest.Client(_transport(self.settings, pyqwest.HTTPVersion.HTTP2, account.proxy)),
            )
        return route

    def stub(self, account: Account, name: str, build: Callable[[Route], T]) -> T:
        """A generated Connect client (`name` says which) on the account's route, built once per
        route: stubs hold their HTTP client, so each proxy gets its own."""
        key = (name, account.proxy)
        stub = self._stubs.get(key)
        if stub is None:
            stub = self._stubs[key] = build(self.route(account))
        result: T = stub
        return result

    def connect_client(
        self, account: Account, client: Callable[..., T], url: str, *, http2: bool, gzip_requests: bool
    ) -> T:
        """A generated Connect client class for `url` on the account's route, built once per
        route and settings. Answers may always come gzipped; requests are gzipped as the client
        profile the dialect imitates does it."""

        def build(route: Route) -> T:
            return client(
                url,
                http_client=route.http2 if http2 else route.http,
                accept_compression=[self.gzip],
                send_compression=self.gzip if gzip_requests else None,
            )

        name = getattr(client, "__qualname__", repr(client))
        return self.stub(account, f"{name} {url} h2={http2} gzip={gzip_requests}", build)

    # --- identities ---

    def _override(self, account: Account, cli: bool) -> str | None:
        """An account's pinned client version applies to the profile it belongs to."""
        version = account.client_version
        if version and version.startswith("cli-") == cli:
            return version
        return None

    def legacy_identity(self, account: Account) -> ClientIdentity:
        s = self.settings
        return ClientIdentity(
            client_version=self._override(account, cli=False) or s.client_version,
            timezone=s.timezone,
            ghost_mode=s.ghost_mode,
            config_version=self.config_version,
        )

    def ide_identity(self, account: Account) -> ClientIdentity:
        s = self.settings
        return ClientIdentity(
            client_version=self._override(account, cli=False) or s.ide_version,
            timezone=s.timezone,
            ghost_mode=s.ghost_mode,
            config_version=self.config_version,
            commit=s.ide_commit,
        )

    def cli_identity(self, account: Account) -> ClientIdentity:
        s = self.settings
        return ClientIdentity(
            client_version=self._override(account, cli=True) or self.discovered_cli_version or s.cli_version,
            timezone=s.timezone,
            ghost_mode=s.ghost_mode,
        )

    @property
    def agent_url(self) -> str:
        if self.settings.agent_url:
            return self.settings.agent_url
        if self.settings.upstream_url != DEFAULT_UPSTREAM_URL:
            # Another upstream (the simulator, a proxy) is its own agent host: a host Cursor's
            # GetServerConfig names is for Cursor's own api2 only.
            return self.settings.agent_base_url
        return self.discovered_agent_url or self.settings.agent_base_url
