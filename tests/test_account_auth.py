"""Accounts that stay alive, end to end against the simulator's auth endpoints: tokens renewed
before they expire (refresh grant, API-key exchange), once more on an auth error, disabled with the
reason on a permanent refusal; `cursorgate login`; credentials sealed at rest."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.procs import ROOT, Stack, start_stack

ADMIN_KEY = "adm-auth-tests-0123456789"
# The console script a user runs (installed by `make install`).
CURSORGATE = str(Path(sys.executable).parent / "cursorgate")
API_KEY = "crsr_" + "a1b2c3d4" * 6
HELLO: Any = [{"role": "user", "content": "still alive?"}]
# Simulator-issued tokens live 4 s; the gateway renews them 2 s before they lapse.
SHORT_LIVED = {
    "CURSORGATE_ADMIN_KEY": ADMIN_KEY,
    "CURSORGATE_SIMULATOR_TOKEN_TTL_S": "4",
    "CURSORGATE_TOKEN_RENEW_BEFORE": "2",
}


def accounts(stack: Stack) -> list[dict[str, Any]]:
    listed: list[dict[str, Any]] = stack.admin("GET", "/accounts").json()["accounts"]
    return listed


def only_renewable_account(stack: Stack, token: str, **extra: str) -> dict[str, Any]:
    """Adds an account from `token` (a crsr_ key or a JWT) and disables the seeded one, so every
    chat goes through the new account."""
    seeded = accounts(stack)[0]
    assert stack.admin("PATCH", f"/accounts/{seeded['id']}", {"enabled": False}).status_code == 200
    added = stack.admin("POST", "/accounts", {"token": token, "label": "renewable", **extra})
    assert added.status_code == 201, added.text
    account: dict[str, Any] = added.json()
    return account


@pytest.fixture
def short_lived(tmp_path: Path) -> Iterator[Stack]:
    gateway = start_stack(tmp_path, SHORT_LIVED)
    yield gateway
    gateway.stop()


def chat(stack: Stack) -> str:
    client = openai.OpenAI(base_url=stack.base_url, api_key=stack.license, max_retries=0)
    return client.chat.completions.create(model="gpt-5.2", messages=HELLO).choices[0].message.content or ""


def test_api_key_account_is_renewed_with_no_failed_request(short_lived: Stack) -> None:
    account = only_renewable_account(short_lived, API_KEY)
    assert account["credential"] == "api_key" and API_KEY not in str(account)
    first_exp = account["token_expires_at"]
    deadline = time.monotonic() + 10  # two and a half lifetimes of the first token
    served = 0
    while time.monotonic() < deadline:
        assert "still alive?" in chat(short_lived)
        served += 1
        time.sleep(0.3)
    (now,) = [a for a in accounts(short_lived) if a["id"] == account["id"]]
    assert now["enabled"] and now["status"] == "active" and not now["renewal_error"]
    assert now["renewed_at"] and now["token_expires_at"] > first_exp
    assert served >= 10
    assert API_KEY not in short_lived.logs()


def test_revoked_api_key_disables_the_account_with_the_reason(short_lived: Stack) -> None:
    account = only_renewable_account(short_lived, API_KEY)
    short_lived.sim_control("auth", {"revoke_api_key": API_KEY})
    deadline = time.monotonic() + 10
    while True:
        (now,) = [a for a in accounts(short_lived) if a["id"] == account["id"]]
        if not now["enabled"]:
            break
        assert time.monotonic() < deadline, now
        time.sleep(0.3)
    assert "renew" in now["disabled_reason"] and "invalid_api_key" in now["disabled_reason"]
    assert API_KEY not in now["disabled_reason"]


def test_bad_api_key_is_a_clear_400(short_lived: Stack) -> None:
    answer = short_lived.admin("POST", "/accounts", {"token": "crsr_short"})
    assert answer.status_code == 400 and "crsr_short" not in answer.text


def login(stack: Stack, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """`cursorgate login` as a user runs it; the "user" opens the printed URL in a browser."""
    env = {**stack.core.env, "CURSORGATE_CORE_ADDRESS": stack.grpc_target}
    proc = subprocess.Popen(
        [CURSORGATE, "login", "--label", "from-login"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    url = ""
    for line in proc.stdout:
        if "loginDeepControl" in line:
            url = line.strip()
            break
    assert url.startswith(stack.sim_url), url
    assert httpx.get(url).status_code == 200  # the user signs in
    out, err = proc.communicate(timeout=60)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_login_adds_an_account_that_renews_itself(short_lived: Stack, tmp_path: Path) -> None:
    seeded = accounts(short_lived)[0]
    short_lived.admin("PATCH", f"/accounts/{seeded['id']}", {"enabled": False})
    done = login(short_lived, tmp_path)
    assert done.returncode == 0, done.stderr
    assert "Added account" in done.stdout
    (account,) = [a for a in accounts(short_lived) if a["label"] == "from-login"]
    assert account["credential"] == "refresh_token"
    deadline = time.monotonic() + 9
    while time.monotonic() < deadline:
        assert "still alive?" in chat(short_lived)
        time.sleep(0.5)
    (now,) = [a for a in accounts(short_lived) if a["id"] == account["id"]]
    assert now["status"] == "active" and now["renewed_at"] and not now["renewal_error"]


def test_reused_refresh_token_disables_with_the_reason(short_lived: Stack, tmp_path: Path) -> None:
    assert login(short_lived, tmp_path).returncode == 0
    short_lived.sim_control("auth", {"revoke_refresh_tokens": True})
    deadline = time.monotonic() + 10
    while True:
        (account,) = [a for a in accounts(short_lived) if a["label"] == "from-login"]
        if not account["enabled"]:
            break
        assert time.monotonic() < deadline, account
        time.sleep(0.3)
    assert "refresh_token_reused" in account["disabled_reason"]


def test_expired_token_is_renewed_on_the_auth_error(tmp_path: Path) -> None:
    """Renewal only after expiry (renew_before 0): the chat that meets the expired token is
    refused by Cursor, the gateway renews once and retries: the caller sees an answer."""
    env = {**SHORT_LIVED, "CURSORGATE_TOKEN_RENEW_BEFORE": "0", "CURSORGATE_SIMULATOR_TOKEN_TTL_S": "2"}
    gateway = start_stack(tmp_path, env)
    try:
        only_renewable_account(gateway, API_KEY)
        for _ in range(4):
            time.sleep(1.2)
            assert "still alive?" in chat(gateway)
        (account,) = [a for a in accounts(gateway) if a["label"] == "renewable"]
        assert account["status"] == "active" and account["renewed_at"]
    finally:
        gateway.stop()


def test_credentials_are_sealed_at_rest_and_the_key_is_required(tmp_path: Path) -> None:
    env = {**SHORT_LIVED, "CURSORGATE_SECRET_KEY": "s3cret-key-for-tests-0123456789"}
    gateway = start_stack(tmp_path, env)
    db = tmp_path / "cursorgate.db"
    try:
        only_renewable_account(gateway, API_KEY)
        token = gateway.token
        time.sleep(1.5)  # the journal flushes
    finally:
        gateway.stop()
    raw = db.read_bytes() + b"".join(p.read_bytes() for p in tmp_path.glob("cursorgate.db-*"))
    assert API_KEY.encode() not in raw and token.encode() not in raw
    with sqlite3.connect(db) as conn:
        stored = [row for row in conn.execute("select token, api_key from accounts")]
    assert stored and all(t.startswith("enc:v1:") for t, _ in stored)

    # Without the key: a clear error at start, nothing wiped.
    core_env = {k: v for k, v in gateway.core.env.items() if k != "CURSORGATE_SECRET_KEY"}
    started = subprocess.run(
        [sys.executable, "-m", "core"], env=core_env, cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert started.returncode == 2 and "CURSORGATE_SECRET_KEY" in started.stderr
    assert "Traceback" not in started.stderr

    # Rotation to a new key, then a start with the new key serves.
    rotate_env = {**gateway.core.env, "CURSORGATE_NEW_SECRET_KEY": "another-key-for-tests-98765"}
    rotated = subprocess.run(
        [CURSORGATE, "secrets", "rotate"],
        env=rotate_env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert rotated.returncode == 0, rotated.stderr
    again = start_stack(
        tmp_path / "again",
        {
            **env,
            "CURSORGATE_DATABASE_URL": gateway.core.env["CURSORGATE_DATABASE_URL"],
            "CURSORGATE_SECRET_KEY": "another-key-for-tests-98765",
        },
    )
    try:
        assert "still alive?" in chat(again)
    finally:
        again.stop()


def test_short_secret_key_is_refused(tmp_path: Path) -> None:
    (tmp_path / "x").mkdir()
    with pytest.raises(RuntimeError, match="at least 16"):
        start_stack(tmp_path / "x", {"CURSORGATE_SECRET_KEY": "short"})
