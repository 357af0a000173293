"""Node client tests' plumbing: npm packages installed on first use into a temporary folder (the
tests skip, visibly, without npm or a registry), and scripts run there against a stack."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.procs import Stack


def npm_project(tmp_path_factory: pytest.TempPathFactory, *packages: str) -> Path:
    """A temporary folder with `packages` installed; skips (visibly) without npm or a registry."""
    if shutil.which("npm") is None or shutil.which("node") is None:
        pytest.skip("npm/node not installed: the Node client test is skipped")
    folder = tmp_path_factory.mktemp("node")
    (folder / "package.json").write_text('{"type": "module", "private": true}')
    install = subprocess.run(
        ["npm", "install", "--no-audit", "--no-fund", "--silent", *packages],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if install.returncode != 0:
        pytest.skip(f"npm install {' '.join(packages)} failed (offline?): {install.stderr[-300:]}")
    return folder


def run_node(stack: Stack, folder: Path, source: str) -> Any:
    """Runs `source` as an ES module in `folder`; returns the JSON its last output line holds."""
    script = folder / "script.mjs"
    script.write_text(source)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "BASE_URL": stack.base_url,
        "API_KEY": stack.license,
    }
    run = subprocess.run(
        ["node", str(script)], cwd=folder, capture_output=True, text=True, timeout=120, env=env, check=False
    )
    assert run.returncode == 0, run.stderr[-2000:]
    return json.loads(run.stdout.strip().splitlines()[-1])
