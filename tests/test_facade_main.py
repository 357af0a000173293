"""`python -m facade` as a real process: env vars and env file, startup line, a request."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import httpx
import pytest

from facade.config import load_settings
from tests.fakecore import LICENSE, FakeCore, fake_core_fixture, free_socket  # noqa: F401  (fixture)


def test_env_file_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = tmp_path / "facade.env"
    env.write_text("CURSORGATE_HTTP_PORT=9123\nCURSORGATE_REQUEST_TIMEOUT=12.5\nCURSOR_TOKEN=not-ours\n")
    monkeypatch.delenv("CURSORGATE_HTTP_PORT", raising=False)
    monkeypatch.delenv("CURSORGATE_REQUEST_TIMEOUT", raising=False)
    monkeypatch.setenv("CURSORGATE_ENV_FILE", str(env))
    settings = load_settings()
    assert settings.http_port == 9123
    assert settings.request_timeout == 12.5


async def test_python_m_facade_serves(fake_core: FakeCore, tmp_path: Path) -> None:
    with free_socket() as probe:
        port = probe.getsockname()[1]
    env = {
        **os.environ,
        "CURSORGATE_HTTP_PORT": str(port),
        "CURSORGATE_CORE_ADDRESS": f"127.0.0.1:{fake_core.port}",
        "CURSORGATE_ENV_FILE": str(tmp_path / "absent.env"),
        "CURSORGATE_LOG_LEVEL": "warning",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "facade", env=env, cwd=tmp_path, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        first = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode()
        assert f"http://127.0.0.1:{port}/cursor/v1" in first
        assert f"127.0.0.1:{fake_core.port}" in first
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as http:
            for _ in range(200):
                try:
                    health = await http.get("/healthz")
                    break
                except httpx.TransportError:
                    await asyncio.sleep(0.05)
            assert health.status_code == 200
            response = await http.post(
                "/cursor/v1/chat/completions",
                json={"model": "echo", "messages": [{"role": "user", "content": "hi from a process"}]},
                headers={"Authorization": f"Bearer {LICENSE}"},
            )
            assert response.status_code == 200
            assert response.json()["choices"][0]["message"]["content"] == "hi from a process"
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 10)
