"""Choosing the upstream dialect per account: auto probing, pinning, and moving on when Cursor
retires one (end to end, against the simulator's retire switch)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.conftest import test_dialects
from tests.procs import Stack, start_stack

ADMIN_KEY = "adm-dialects-0123456789abcdef"
HELLO: Any = [{"role": "user", "content": "hello dialects"}]


@pytest.fixture
def auto_stack(tmp_path: Path) -> Iterator[Stack]:
    gateway = start_stack(tmp_path, {"CURSORGATE_ADMIN_KEY": ADMIN_KEY}, dialect="auto")
    yield gateway
    gateway.stop()


def only_account(stack: Stack) -> dict[str, Any]:
    (account,) = stack.admin("GET", "/accounts").json()["accounts"]
    assert isinstance(account, dict)
    return account


def chat(stack: Stack) -> str:
    client = openai.OpenAI(base_url=stack.base_url, api_key=stack.license, max_retries=0)
    return client.chat.completions.create(model="gpt-5.2", messages=HELLO).choices[0].message.content or ""


def test_auto_picks_the_first_dialect_the_account_accepts(auto_stack: Stack) -> None:
    assert "hello dialects" in chat(auto_stack)
    account = only_account(auto_stack)
    preferred = test_dialects()[0]  # the build's order of preference: inference, agent, legacy
    assert account["dialect"] == "auto" and account["active_dialect"] == preferred
    assert auto_stack.last_view()["dialect"] == preferred
    probe = next(p for p in account["probes"] if p["dialect"] == preferred)
    assert probe["ok"] is True and probe["probed_at"]


def test_auto_moves_on_when_cursor_retires_the_active_dialect(auto_stack: Stack) -> None:
    dialects = test_dialects()
    if len(dialects) < 2:
        pytest.skip("this build speaks one dialect")
    assert "hello dialects" in chat(auto_stack)
    first = only_account(auto_stack)["active_dialect"]
    # Cursor stops accepting it for this account: the next chat is refused with "Update Required",
    # and the gateway probes again and answers through the next dialect, with no error.
    auto_stack.sim_control("tokens", {"token": auto_stack.token, "retired": [first]})
    assert "hello dialects" in chat(auto_stack)
    account = only_account(auto_stack)
    assert account["active_dialect"] not in ("", first)
    assert auto_stack.last_view()["dialect"] == account["active_dialect"]
    refused = next(p for p in account["probes"] if p["dialect"] == first)
    assert refused["ok"] is False


def test_every_dialect_retired_is_a_clear_outdated_error(auto_stack: Stack) -> None:
    auto_stack.sim_control("tokens", {"token": auto_stack.token, "retired": test_dialects()})
    client = openai.OpenAI(base_url=auto_stack.base_url, api_key=auto_stack.license, max_retries=0)
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(model="gpt-5.2", messages=HELLO)
    body = info.value.body
    assert isinstance(body, dict) and body["code"] == "upstream_outdated_client"
    # The account is not penalised: nothing it could do differently.
    assert only_account(auto_stack)["status"] == "active"


def test_pinning_a_dialect_per_account(auto_stack: Stack) -> None:
    account = only_account(auto_stack)
    for dialect in test_dialects():
        pinned = auto_stack.admin("PATCH", f"/accounts/{account['id']}", {"dialect": dialect})
        assert pinned.status_code == 200 and pinned.json()["dialect"] == dialect
        assert "hello dialects" in chat(auto_stack)
        assert auto_stack.last_view()["dialect"] == dialect
    bad = auto_stack.admin("PATCH", f"/accounts/{account['id']}", {"dialect": "telepathy"})
    assert bad.status_code == 400 and "dialect" in bad.json()["error"]["message"]


def test_probe_again_through_the_admin_api(auto_stack: Stack) -> None:
    account = only_account(auto_stack)
    probed = auto_stack.admin("POST", f"/accounts/{account['id']}/probe")
    assert probed.status_code == 200, probed.text
    results = {p["dialect"]: p["ok"] for p in probed.json()["probes"]}
    assert results == dict.fromkeys(test_dialects(), True)
    assert probed.json()["active_dialect"] == test_dialects()[0]


def test_gateway_wide_pin_and_a_bad_setting(tmp_path: Path) -> None:
    gateway = start_stack(tmp_path, {"CURSORGATE_ADMIN_KEY": ADMIN_KEY}, dialect="legacy")
    try:
        assert "hello dialects" in chat(gateway)
        assert gateway.last_view()["dialect"] == "legacy"
    finally:
        gateway.stop()
    (tmp_path / "bad").mkdir()
    with pytest.raises(RuntimeError, match="CURSORGATE_UPSTREAM_DIALECT: must be one of"):
        start_stack(tmp_path / "bad", {"CURSORGATE_UPSTREAM_DIALECT": "smoke-signals"})


def test_identity_discovery_from_server_config_and_install_script(tmp_path: Path) -> None:
    """GetServerConfig's config version reaches the IDE headers (not a made-up value), and the
    install script's newer CLI build replaces the configured one; both never fatal."""
    gateway = start_stack(tmp_path, dialect="legacy")
    try:
        deadline = time.monotonic() + 20
        while "current Cursor CLI build: cli-2026.11.20-5e1f2a9" not in gateway.logs():
            assert time.monotonic() < deadline, gateway.logs()[-2000:]
            time.sleep(0.2)
        assert "hello dialects" in chat(gateway)
        headers = gateway.chat_requests()[-1]["headers"]
        assert headers["x-cursor-config-version"] == "sim-config-7f3a"
    finally:
        gateway.stop()


def test_discovery_failures_are_not_fatal(tmp_path: Path) -> None:
    gateway = start_stack(
        tmp_path, {"CURSORGATE_CLI_INSTALL_URL": "http://127.0.0.1:9/nothing"}, dialect="legacy"
    )
    try:
        assert "hello dialects" in chat(gateway)
        deadline = time.monotonic() + 20
        while "identity discovery: cli_version failed" not in gateway.logs():
            assert time.monotonic() < deadline, gateway.logs()[-2000:]
            time.sleep(0.2)
        assert "current Cursor CLI build" not in gateway.logs()
    finally:
        gateway.stop()
