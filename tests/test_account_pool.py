"""The account pool, end to end against the simulator: a per-account proxy (a real SOCKS5 process
with a password) carries that account's calls, is masked everywhere and sealed at rest, and when
it is killed the request fails over while the account stays active; accounts near their plan
limit are skipped; conversation affinity sticks and falls back; bulk import (admin API and CLI);
"Add by login" through the admin API; bad input is a 400 that changes nothing."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.procs import ROOT, Stack, free_port, start_stack
from tests.socks_proxy import PROXY_PASSWORD, PROXY_USER, SocksProxy
from tests.store_backends import distinct_token

ADMIN_KEY = "adm-pool-tests-0123456789"
SECRET_KEY = "pool-tests-secret-key-0123456789"
CURSORGATE = str(Path(sys.executable).parent / "cursorgate")


def accounts(stack: Stack) -> dict[str, dict[str, Any]]:
    listed = stack.admin("GET", "/accounts")
    assert listed.status_code == 200, listed.text
    return {a["id"]: a for a in listed.json()["accounts"]}


def seeded_id(stack: Stack) -> str:
    return str(next(a["id"] for a in accounts(stack).values() if a["label"] == "CURSOR_TOKEN"))


def add(stack: Stack, token: str, **extra: str) -> dict[str, Any]:
    answer = stack.admin("POST", "/accounts", {"token": token, **extra})
    assert answer.status_code == 201, answer.text
    account: dict[str, Any] = answer.json()
    return account


def enable(stack: Stack, account_id: str, on: bool) -> None:
    assert stack.admin("PATCH", f"/accounts/{account_id}", {"enabled": on}).status_code == 200


def chat(stack: Stack, text: str = "hello pool", **extra: Any) -> str:
    client = openai.OpenAI(base_url=stack.base_url, api_key=stack.license, max_retries=0)
    answer = client.chat.completions.create(
        model="gpt-5.2", messages=[{"role": "user", "content": text}], **extra
    )
    return answer.choices[0].message.content or ""


def served_by(stack: Stack, n: int) -> list[str]:
    """The accounts that served the last `n` requests, oldest first."""
    entries = stack.admin("GET", f"/requests?limit={n}").json()["requests"]
    assert len(entries) == n and all(e["outcome"] == "ok" for e in entries), entries
    return [e["account_id"] for e in reversed(entries)]


# --- per-account proxy ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def proxied(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, SocksProxy]]:
    """One gateway (credentials sealed with a secret key) and one proxy for the tests below, in
    file order: the last one kills the proxy."""
    tmp = tmp_path_factory.mktemp("proxied")
    proxy = SocksProxy(free_port(), tmp / "proxy.log")
    proxy.start()
    env = {
        "CURSORGATE_ADMIN_KEY": ADMIN_KEY,
        "CURSORGATE_SECRET_KEY": SECRET_KEY,
        "CURSORGATE_PROXY_RETRY_AFTER": "120",
    }
    stack = start_stack(tmp / "gw", env)
    yield stack, proxy
    stack.stop()
    proxy.kill()


BAD_PROXIES = [
    "ftp://user:pw-Bad-1@proxy.example:21",
    "socks5://user:pw-Bad-1@",
    "http://user:pw-Bad-1@proxy.example:99999",
    "socks5://user:pw-Bad-1@proxy.example:1080/some/path",
    "just words pw-Bad-1",
]


def test_bad_proxy_urls_are_400_and_change_nothing(proxied: tuple[Stack, SocksProxy]) -> None:
    stack, _ = proxied
    before = accounts(stack)
    seeded = seeded_id(stack)
    for bad in BAD_PROXIES:
        token = distinct_token("auth0|user_bad_proxy")
        refused = stack.admin("POST", "/accounts", {"token": token, "proxy": bad})
        assert refused.status_code == 400, (bad, refused.text)
        assert "proxy" in refused.json()["error"]["message"] and "pw-Bad-1" not in refused.text
        patched = stack.admin("PATCH", f"/accounts/{seeded}", {"proxy": bad, "label": "renamed"})
        assert patched.status_code == 400 and "pw-Bad-1" not in patched.text
        assert stack.admin("POST", "/accounts/login", {"proxy": bad}).status_code == 400
        imported = stack.admin("POST", "/accounts/import", {"tokens": token, "proxy": bad})
        assert imported.status_code == 400
    after = accounts(stack)
    assert after.keys() == before.keys()
    assert after[seeded]["label"] == "CURSOR_TOKEN" and after[seeded]["proxy"] == ""
    assert "pw-Bad-1" not in stack.logs()

    # A good one is kept across a restart (sealed in the database, opened with the key).
    stored = add(stack, distinct_token("auth0|user_stored_proxy"), proxy="http://bob:pw-Stored-3@127.0.0.1:9")
    # Nothing listens on port 9: the refresh on add found the proxy dead, not the account.
    assert stored["proxy_down_until"] and stored["status"] == "active" and stored["enabled"]
    enable(stack, stored["id"], False)
    stack.restart_core()
    again = accounts(stack)[stored["id"]]
    assert again["proxy"] == "http://bob:***@127.0.0.1:9" and not again["enabled"]
    assert "pw-Stored-3" not in stack.logs()


def test_login_goes_through_the_accounts_proxy(proxied: tuple[Stack, SocksProxy]) -> None:
    stack, proxy = proxied
    started = stack.admin("POST", "/accounts/login", {"label": "via proxy", "proxy": proxy.url})
    assert started.status_code == 201, started.text
    login = started.json()
    before = proxy.carried(stack.sim.port)
    assert httpx.get(login["url"]).status_code == 200  # the "user" signs in
    done = wait_login(stack, login["login_id"])
    assert done["state"] == "done", done
    assert done["account"]["proxy"] == f"socks5://{PROXY_USER}:***@127.0.0.1:{proxy.port}"
    assert done["account"]["credential"] == "refresh_token"
    assert proxy.carried(stack.sim.port) > before  # /auth/poll and the account's details


def test_account_proxy_carries_its_calls_is_masked_and_fails_over_when_killed(
    proxied: tuple[Stack, SocksProxy],
) -> None:
    stack, proxy = proxied
    sim_port = stack.sim.port
    direct = seeded_id(stack)
    masked = f"socks5://{PROXY_USER}:***@127.0.0.1:{proxy.port}"

    # Adding it fetches models, usage and plan: through the proxy already. (The proxy restarts
    # first, here and below: connections the last test left in the clients' pools would otherwise
    # carry calls without a new CONNECT to count.)
    proxy.kill()
    proxy.start()
    before = proxy.carried(sim_port)
    proxied_account = add(stack, distinct_token("auth0|user_behind_proxy"), label="proxied", proxy=proxy.url)
    assert proxied_account["proxy"] == masked
    assert proxied_account["models_known"] and proxied_account["usage"]["planUsage"]["limit"] == 2000
    assert proxy.carried(sim_port) > before
    pid = proxied_account["id"]

    # The proxied account's chat goes through the proxy (a SOCKS CONNECT to the simulator).
    only(stack, {pid})
    proxy.kill()
    proxy.start()
    before = proxy.carried(sim_port)
    assert "hello pool" in chat(stack)
    assert proxy.carried(sim_port) > before
    # The account without a proxy goes direct: the proxy sees nothing of its chat.
    only(stack, {direct})
    before = proxy.carried(sim_port)
    assert "hello pool" in chat(stack)
    assert proxy.carried(sim_port) == before
    assert served_by(stack, 2) == [pid, direct]

    # Both enabled: the proxied account is next in line (least recently used), and its proxy dies.
    only(stack, {direct, pid})
    proxy.kill()
    for _ in range(3):
        assert "hello pool" in chat(stack)  # failed over to the direct account: no error
    assert served_by(stack, 3) == [direct, direct, direct]
    now = accounts(stack)
    dead = now[pid]
    assert dead["enabled"] and dead["status"] == "active" and dead["last_error"] == ""
    assert dead["failures"] == "0"  # int64 in proto JSON: the account was not penalised
    assert dead["proxy_down_until"] and "proxy" in dead["proxy_error"]
    assert now[direct]["status"] == "active"

    # Masked everywhere: admin JSON, the logs, and the database (sealed with the secret key).
    listing = stack.admin("GET", "/accounts").text
    assert PROXY_PASSWORD not in listing and masked in listing
    assert PROXY_PASSWORD not in stack.logs()
    database = Path(stack.core.env["CURSORGATE_DATABASE_URL"].split("///", 1)[1]).read_bytes()
    assert PROXY_PASSWORD.encode() not in database and f"127.0.0.1:{proxy.port}".encode() not in database

    # Only the account behind the dead proxy left: a 429 that says when the proxy is tried again
    # (CURSORGATE_PROXY_RETRY_AFTER=120), never a detour around the proxy.
    only(stack, {pid})
    with pytest.raises(openai.RateLimitError) as info:
        chat(stack)
    assert 60 <= int(info.value.response.headers["retry-after"]) <= 120
    assert accounts(stack)[pid]["status"] == "active"

    # Clearing the proxy (empty string) puts the account back on the gateway's route at once.
    cleared = stack.admin("PATCH", f"/accounts/{pid}", {"proxy": ""})
    assert cleared.status_code == 200 and cleared.json()["proxy"] == ""
    assert "hello pool" in chat(stack)
    assert served_by(stack, 1) == [pid]


# --- near-limit routing, affinity, remaining credit -----------------------------------------


@pytest.fixture(scope="module")
def pool_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    env = {
        "CURSORGATE_ADMIN_KEY": ADMIN_KEY,
        "CURSORGATE_POOL_NEAR_LIMIT_PERCENT": "80",
        "CURSORGATE_POOL_AFFINITY": "1",
        "CURSORGATE_ACCOUNT_LOGIN_TIMEOUT": "6",
    }
    stack = start_stack(tmp_path_factory.mktemp("pool"), env)
    yield stack
    stack.stop()


def only(stack: Stack, keep: set[str]) -> None:
    for account_id, account in accounts(stack).items():
        want = account_id in keep
        if account["enabled"] != want:
            enable(stack, account_id, want)


def test_near_limit_account_is_skipped_and_remaining_credit_shown(pool_stack: Stack) -> None:
    stack = pool_stack
    nearly_spent = distinct_token("auth0|user_nearly_spent")
    stack.sim_control("tokens", {"token": nearly_spent, "plan_spent": 1900})  # 95 % of 2000 cents
    near = add(stack, nearly_spent, label="nearly spent")
    fresh = add(stack, distinct_token("auth0|user_fresh"), label="fresh")
    # Written out from the simulator's numbers: limit 2000, spend 1900 / 123.
    assert near["remaining_credit"] == 100 and near["plan_used_percent"] == 95 and near["near_limit"]
    assert fresh["remaining_credit"] == 1877 and fresh["plan_used_percent"] == 6.15
    assert not fresh["near_limit"]

    only(stack, {near["id"], fresh["id"]})
    for n in range(4):
        assert "near limit" in chat(stack, f"near limit {n}")
    assert served_by(stack, 4) == [fresh["id"]] * 4  # least recently used would alternate

    # With no other account left, the near-limit one still serves.
    only(stack, {near["id"]})
    assert "near limit" in chat(stack, "near limit last")
    assert served_by(stack, 1) == [near["id"]]


def test_affinity_sticks_to_one_account_and_falls_back(pool_stack: Stack) -> None:
    stack = pool_stack
    trio = [add(stack, distinct_token(f"auth0|user_affine_{i}"), label=f"affine {i}")["id"] for i in range(3)]
    only(stack, set(trio))

    # A caller's key (prompt_cache_key): every request of the conversation on one account.
    for n in range(4):
        chat(stack, f"keyed {n}", extra_body={"prompt_cache_key": "conversation-a"})
    keyed = served_by(stack, 4)
    assert len(set(keyed)) == 1, keyed

    # No key: the conversation's first message is the key, so its later turns follow it.
    client = openai.OpenAI(base_url=stack.base_url, api_key=stack.license, max_retries=0)
    history: list[Any] = [{"role": "user", "content": "unkeyed conversation start"}]
    for n in range(3):
        answer = client.chat.completions.create(model="gpt-5.2", messages=history)
        history += [
            {"role": "assistant", "content": answer.choices[0].message.content},
            {"role": "user", "content": f"turn {n}"},
        ]
    unkeyed = served_by(stack, 3)
    assert len(set(unkeyed)) == 1, unkeyed

    # The sticky account goes away: the conversation moves on, and sticks to its new account.
    sticky = keyed[0]
    enable(stack, sticky, False)
    for n in range(3):
        chat(stack, f"keyed after {n}", extra_body={"prompt_cache_key": "conversation-a"})
    moved = served_by(stack, 3)
    assert sticky not in moved and len(set(moved)) == 1, moved

    # Anthropic's metadata.user_id is a caller's key too: different openings, one account.
    claude = anthropic.Anthropic(base_url=stack.root_url, api_key=stack.license, max_retries=0)
    for n in range(3):
        claude.messages.create(
            model="claude-4.5-sonnet",
            max_tokens=50,
            messages=[{"role": "user", "content": f"claude opening {n}"}],
            metadata={"user_id": "claude-user-1"},
        )
    by_user = served_by(stack, 3)
    assert len(set(by_user)) == 1, by_user


# --- bulk import -------------------------------------------------------------------------------


def test_import_adds_good_lines_and_reports_bad_ones(pool_stack: Stack) -> None:
    stack = pool_stack
    good = distinct_token("auth0|user_import_1")
    cookie_jwt = distinct_token("auth0|user_import_2")
    secret_garbage = "garbage-Secret-1234"
    lines = [
        good,  # 1
        "",  # 2 (skipped)
        "# a comment",  # 3 (skipped)
        secret_garbage,  # 4
        f"user_01ABC%3A%3A{cookie_jwt}",  # 5: a WorkosCursorSessionToken cookie value
        good,  # 6: the same token again
        "user_01ABC%3A%3Anot.a.jwt",  # 7: a cookie whose JWT is no JWT
        "crsr_short",  # 8: an API key Cursor refuses
    ]
    before = set(accounts(stack))
    answer = stack.admin("POST", "/accounts/import", {"tokens": "\n".join(lines), "label_prefix": "batch"})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert [a["label"] for a in body["added"]] == ["batch 1", "batch 5"]
    assert [a["subject"] for a in body["added"]] == ["auth0|user_import_1", "auth0|user_import_2"]
    assert [f["line"] for f in body["failed"]] == [4, 6, 7, 8]
    errors = {f["line"]: f["error"] for f in body["failed"]}
    assert "expected a Cursor JWT" in errors[4] and "already account" in errors[6]
    assert "JWT payload" in errors[7] and "Cursor refused" in errors[8]
    for secret in (good, cookie_jwt, secret_garbage, good.split(".")[1]):
        assert secret not in answer.text
    assert set(accounts(stack)) - before == {a["id"] for a in body["added"]}

    empty = stack.admin("POST", "/accounts/import", {"tokens": 5})
    assert empty.status_code == 400

    # The same forms one at a time: a clear 400 each, nothing added.
    count = len(accounts(stack))
    for bad in (
        "WorkosCursorSessionToken=user_01ABC%3A%3A",
        "user_01ABC%3A%3Anot.a.jwt",
        "user_01ABC::eyJhbGciOi.@@@.sig",
    ):
        refused = stack.admin("POST", "/accounts", {"token": bad})
        assert refused.status_code == 400, (bad, refused.text)
        assert refused.json()["error"]["message"].startswith("token: ")
    assert len(accounts(stack)) == count


def test_cli_import_reads_a_file(pool_stack: Stack, tmp_path: Path) -> None:
    stack = pool_stack
    path = tmp_path / "tokens.txt"
    path.write_text(f"{distinct_token('auth0|user_cli_import')}\nnot-a-token-Secret-99\n")
    env = {**stack.core.env, "CURSORGATE_CORE_ADDRESS": stack.grpc_target}
    run = subprocess.run(
        [CURSORGATE, "accounts", "import", str(path), "--label-prefix", "cli"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 1, run.stderr  # one line was refused
    assert "added account acc_" in run.stdout and "(cli 1," in run.stdout
    assert "line 2: token: expected a Cursor JWT" in run.stderr
    assert "not-a-token-Secret-99" not in run.stdout + run.stderr
    assert any(a["label"] == "cli 1" for a in accounts(stack).values())


# --- add by login through the admin API ---------------------------------------------------------


def wait_login(stack: Stack, login_id: str, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        answer = stack.admin("GET", f"/accounts/login/{login_id}")
        assert answer.status_code == 200, answer.text
        state: dict[str, Any] = answer.json()
        if state["state"] != "pending" or time.monotonic() > deadline:
            return state
        time.sleep(0.3)


def test_add_by_login_through_the_admin_api(pool_stack: Stack) -> None:
    stack = pool_stack
    started = stack.admin("POST", "/accounts/login", {"label": "web login"})
    assert started.status_code == 201, started.text
    login = started.json()
    assert login["url"].startswith(f"{stack.sim_url}/loginDeepControl?") and login["expires_at"]
    pending = stack.admin("GET", f"/accounts/login/{login['login_id']}").json()
    assert pending["state"] == "pending" and pending["account"] is None and pending["error"] == ""

    assert httpx.get(login["url"]).status_code == 200  # the operator signs in (simulated)
    done = wait_login(stack, login["login_id"])
    assert done["state"] == "done", done
    account = done["account"]
    assert account["label"] == "web login" and account["credential"] == "refresh_token"
    assert account["subject"] == "auth0|user_login" and account["id"] in accounts(stack)

    # Nobody signs in: the login expires (CURSORGATE_ACCOUNT_LOGIN_TIMEOUT=6) and adds nothing.
    before = set(accounts(stack))
    lonely = stack.admin("POST", "/accounts/login", {}).json()
    expired = wait_login(stack, lonely["login_id"], timeout=20)
    assert expired["state"] == "expired" and expired["account"] is None and expired["error"]
    assert set(accounts(stack)) == before

    unknown = stack.admin("GET", "/accounts/login/login_nope")
    assert unknown.status_code == 404
