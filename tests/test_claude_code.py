"""Claude Code itself (`@anthropic-ai/claude-code`, headless `claude -p`) against the gateway.

The CLI is installed with npm into a cache directory (`CURSORGATE_CLAUDE_CODE_DIR`, default
`~/.cache/cursorgate/claude-code`) on first use; without npm, or when the install fails (no
registry), the test is skipped and says why. The simulator calls the Bash tool because the
prompt names it; Bash runs a `sim-command` script we put on PATH (the simulator's example
argument), so a marker file proves that Claude Code ran the call and sent the result back.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.procs import Stack

# The release the request shapes in docs were checked against; bump deliberately.
VERSION = "2.1.197"
CACHE = Path(os.environ.get("CURSORGATE_CLAUDE_CODE_DIR", Path.home() / ".cache/cursorgate/claude-code"))
INSTALL_TIMEOUT = 300
RUN_TIMEOUT = 180


def claude_binary() -> Path:
    binary = CACHE / VERSION / "node_modules/.bin/claude"
    if binary.exists():
        return binary
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("npm is not installed: cannot install @anthropic-ai/claude-code")
    target = CACHE / VERSION
    target.mkdir(parents=True, exist_ok=True)
    try:
        subprocess.run(
            [
                npm,
                "install",
                "--no-audit",
                "--no-fund",
                "--prefix",
                str(target),
                f"@anthropic-ai/claude-code@{VERSION}",
            ],
            check=True,
            capture_output=True,
            timeout=INSTALL_TIMEOUT,
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as error:
        output = getattr(error, "stderr", b"") or b""
        pytest.skip(f"npm install @anthropic-ai/claude-code@{VERSION} failed: {output.decode()[-300:]}")
    if not binary.exists():
        pytest.skip(f"npm installed no claude binary at {binary}")
    return binary


def test_claude_code_completes_a_tool_using_task(stack: Stack, tmp_path: Path) -> None:
    claude = claude_binary()
    home, work, bin_dir = tmp_path / "home", tmp_path / "work", tmp_path / "bin"
    for folder in (home, work, bin_dir):
        folder.mkdir()
    marker = tmp_path / "marker"
    script = bin_dir / "sim-command"
    script.write_text(f"#!/bin/sh\necho ran-by-claude-code\ntouch {marker}\n")
    script.chmod(0o755)
    env = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "HOME": str(home),
        # The documented base URL: the CLI appends /v1/messages (and sends ?beta=true).
        "ANTHROPIC_BASE_URL": f"{stack.root_url}/cursor",
        "ANTHROPIC_API_KEY": stack.license,
        "ANTHROPIC_DEFAULT_HAIKU_MODEL": "claude-4.5-haiku",
        "DISABLE_TELEMETRY": "1",
        "DISABLE_AUTOUPDATER": "1",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    }
    done = subprocess.run(
        [
            str(claude),
            "-p",
            "Use Bash to run the check",
            "--model",
            "claude-4.5-sonnet",
            "--allowedTools",
            "Bash",
            "--output-format",
            "json",
        ],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
    )
    assert done.returncode == 0, done.stderr[-2000:] + done.stdout[-2000:]
    result = json.loads(done.stdout)
    assert result["is_error"] is False and result["subtype"] == "success"
    assert result["num_turns"] == 2  # the tool call, then the answer to its result
    assert marker.exists(), "Claude Code did not run the tool call"
    # The simulator's answer quotes the tool result Claude Code sent back.
    assert "The tools answered: Bash" in result["result"]
    assert "ran-by-claude-code" in result["result"]
