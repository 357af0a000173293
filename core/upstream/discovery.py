"""Keeping the gateway's identity current, never fatally: Cursor's server config (the config
version the IDE sends as x-cursor-config-version, the agent host from agentUrlConfig) and the
current CLI build (the public install script names it). Failures are logged and retried later;
the configured defaults stay in force meanwhile."""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any

from core.pool.accounts import AccountPool
from core.pool.proxies import ClientsByProxy
from core.upstream.context import UpstreamContext
from core.upstream.headers import cursor_headers

log = logging.getLogger("cursorgate.discovery")

SERVER_CONFIG_PATH = "/aiserver.v1.ServerConfigService/GetServerConfig"
# agent-protocol.md §2.5: GO-A scrapes the CLI build id from the installer with this pattern.
CLI_BUILD = re.compile(r"cli-20\d\d\.\d\d\.\d\d-[0-9a-f]{7,40}")
MAX_BYTES = 256 * 1024


def _cli_key(version: str) -> str:
    """Sortable by build date: "cli-2026.09.02-c22c1a3" -> "2026.09.02"."""
    return version[4:14]


class Discovery:
    def __init__(self, ctx: UpstreamContext, pool: AccountPool) -> None:
        self.ctx = ctx
        self.pool = pool
        settings = ctx.settings
        # The server config is asked with an account's token, so through that account's proxy.
        self._http = ClientsByProxy(settings.upstream_proxy, timeout=15.0, follow_redirects=True)
        self._task: asyncio.Task[None] | None = None
        self.install_url = settings.cli_install_url

    def start(self) -> None:
        if self.ctx.settings.discover_versions:
            self._task = asyncio.create_task(self._run(), name="identity-discovery")

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._http.aclose()

    async def _run(self) -> None:
        while True:
            await self.discover()
            await asyncio.sleep(self.ctx.settings.discover_interval)

    async def discover(self) -> None:
        for step in (self._server_config, self._cli_version):
            try:
                await step()
            except Exception as err:  # never fatal: the defaults stay in force
                log.info("identity discovery: %s failed (%s)", step.__name__.strip("_"), type(err).__name__)

    async def _server_config(self) -> None:
        account = next((a for a in self.pool.all() if a.enabled), None)
        if account is None:
            return
        headers = {
            **cursor_headers(account.token, self.ctx.legacy_identity(account)),
            "content-type": "application/json",
            "connect-protocol-version": "1",
        }
        url = self.ctx.settings.upstream_url.rstrip("/") + SERVER_CONFIG_PATH
        response = await self._http.get(account.proxy).post(url, headers=headers, content=b"{}")
        if response.status_code != 200 or len(response.content) > MAX_BYTES:
            raise ValueError(f"HTTP {response.status_code}")
        data: Any = response.json()
        version = data.get("configVersion") if isinstance(data, dict) else None
        if isinstance(version, str) and 0 < len(version) <= 100:
            self.ctx.config_version = version
        urls = data.get("agentUrlConfig") if isinstance(data, dict) else None
        if isinstance(urls, dict):
            agent = urls.get("agentnUrl") or urls.get("agentUrl")
            if isinstance(agent, str) and agent.startswith("https://") and len(agent) <= 200:
                self.ctx.discovered_agent_url = agent
        log.info(
            "server config: config version %s, agent host %s",
            "known" if self.ctx.config_version else "unknown",
            self.ctx.agent_url,
        )

    async def _cli_version(self) -> None:
        if not self.install_url:
            return
        response = await self._http.get().get(self.install_url)
        if response.status_code != 200 or len(response.content) > MAX_BYTES:
            raise ValueError(f"HTTP {response.status_code}")
        found = sorted(set(CLI_BUILD.findall(response.text)), key=_cli_key)
        if not found:
            raise ValueError("no CLI build id in the install script")
        newest = found[-1]
        configured = self.ctx.settings.cli_version
        if _cli_key(newest) >= _cli_key(configured) and newest != self.ctx.discovered_cli_version:
            self.ctx.discovered_cli_version = newest
            log.info("current Cursor CLI build: %s", newest)
