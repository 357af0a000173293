"""Per-license concurrency limit: a second open request is a 429 until the first one ends."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from tests.procs import start_stack


def test_license_concurrency_limit(tmp_path: Path) -> None:
    gateway = start_stack(tmp_path, {"CURSORGATE_LICENSE_MAX_CONCURRENT": "1"})
    headers = {"Authorization": f"Bearer {gateway.license}"}
    url = f"{gateway.base_url}/chat/completions"
    slow = {
        "model": "gpt-5.2",
        "stream": True,
        "messages": [{"role": "user", "content": "x\nsim: delay_ms=300"}],
    }
    quick = {"model": "gpt-5.2", "messages": [{"role": "user", "content": "second"}]}
    try:
        with httpx.stream("POST", url, json=slow, headers=headers, timeout=30) as first:
            assert first.status_code == 200
            second = httpx.post(url, json=quick, headers=headers, timeout=30)
            assert second.status_code == 429
            assert second.json()["error"]["code"] == "rate_limit_exceeded"
            assert second.headers["retry-after"] == "1"
            first.read()
        deadline = time.monotonic() + 5
        while (third := httpx.post(url, json=quick, headers=headers, timeout=30)).status_code == 429:
            assert time.monotonic() < deadline, "the slot was never released"
            time.sleep(0.05)
        assert third.status_code == 200
    finally:
        gateway.stop()
