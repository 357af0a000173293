"""Model aliases and Max mode end to end: admin-set aliases (at once, after a restart), env
aliases, allow-lists, listings, `-max` reaching the upstream, Max-mode errors, bad tables."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from cursorgate.v1 import admin_pb2, admin_pb2_grpc, chat_pb2, chat_pb2_grpc
from tests.procs import ROOT, Stack, start_stack

ADMIN_KEY = "adm-alias-tests-0123456789"
HELLO: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hello"}]
ENV_ALIASES = '{"team-fast": ["no-such-model", "gpt-5.2-fast"]}'


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    env = {"CURSORGATE_ADMIN_KEY": ADMIN_KEY, "CURSORGATE_MODEL_ALIASES": ENV_ALIASES}
    gateway = start_stack(tmp_path_factory.mktemp("aliases"), env)
    yield gateway
    gateway.stop()


def api(stack: Stack, key: str | None = None) -> openai.OpenAI:
    return openai.OpenAI(base_url=stack.base_url, api_key=key or stack.license, max_retries=0)


def last_upstream(stack: Stack) -> dict[str, Any]:
    """The model and Max mode of the newest chat the simulator received (any dialect)."""
    view = stack.last_view()
    details: dict[str, Any] = {"modelName": view["model"]}
    if view["max_mode"]:
        details["maxMode"] = True
    return details


def newest_log_entry(stack: Stack) -> dict[str, Any]:
    entry: dict[str, Any] = stack.admin("GET", "/requests?limit=1").json()["requests"][0]
    return entry


def refresh_primary(stack: Stack) -> None:
    (account,) = stack.admin("GET", "/accounts").json()["accounts"]
    assert stack.admin("POST", f"/accounts/{account['id']}/refresh").status_code == 200


def test_env_alias_serves_its_first_offered_target(gw: Stack) -> None:
    answer = api(gw).chat.completions.create(model="team-fast", messages=HELLO)
    assert answer.model == "team-fast"
    assert last_upstream(gw) == {"modelName": "gpt-5.2-fast"}
    entry = newest_log_entry(gw)
    assert (entry["model"], entry["requested_model"]) == ("gpt-5.2-fast", "team-fast")
    listed = {a["name"]: a for a in gw.admin("GET", "/aliases").json()["aliases"]}
    assert listed["team-fast"]["source"] == "env" and listed["team-fast"]["resolves_to"] == "gpt-5.2-fast"
    assert listed["gpt-4o"]["source"] == "default" and listed["gpt-4o"]["note"]


def test_admin_alias_works_at_once_and_after_a_restart(gw: Stack) -> None:
    created = gw.admin("PUT", "/aliases/team-default", {"targets": ["not-offered", "composer-1"]})
    assert created.status_code == 200, created.text
    assert created.json() == {
        "name": "team-default",
        "targets": ["not-offered", "composer-1"],
        "source": "admin",
        "note": "",
        "resolves_to": "composer-1",
    }
    answer = api(gw).chat.completions.create(model="team-default", messages=HELLO)
    assert answer.model == "team-default"
    assert last_upstream(gw)["modelName"] == "composer-1"

    listed = {m.id: m for m in api(gw).models.list()}
    alias = listed["team-default"].model_dump()
    assert alias["is_alias"] is True and alias["alias_of"] == "composer-1"
    assert listed["composer-1"].model_dump()["is_alias"] is False

    gw.restart_core()
    again = api(gw).chat.completions.create(model="team-default", messages=HELLO)
    assert again.model == "team-default" and last_upstream(gw)["modelName"] == "composer-1"
    stored = {a["name"]: a for a in gw.admin("GET", "/aliases").json()["aliases"]}
    assert stored["team-default"]["source"] == "admin"

    assert gw.admin("DELETE", "/aliases/team-default").status_code == 200
    with pytest.raises(openai.NotFoundError):
        api(gw).chat.completions.create(model="team-default", messages=HELLO)
    # Only admin-set aliases can be removed; the built-in one stays.
    gone = gw.admin("DELETE", "/aliases/gpt-4o")
    assert gone.status_code == 404 and "admin API" in gone.json()["error"]["message"]


def test_an_admin_alias_overrides_a_default_and_cycles_are_refused(gw: Stack) -> None:
    assert gw.admin("PUT", "/aliases/gpt-4o", {"targets": "gpt-5-mini"}).status_code == 200
    assert api(gw).chat.completions.create(model="gpt-4o", messages=HELLO).model == "gpt-4o"
    assert last_upstream(gw)["modelName"] == "gpt-5-mini"
    assert gw.admin("DELETE", "/aliases/gpt-4o").status_code == 200
    api(gw).chat.completions.create(model="gpt-4o", messages=HELLO)
    assert last_upstream(gw)["modelName"] == "gpt-5.2"

    cycle = gw.admin(
        "PUT", "/aliases/claude-4.5-sonnet-thinking", {"targets": ["claude-3.7-sonnet-thinking"]}
    )
    assert cycle.status_code == 400
    assert cycle.json()["error"]["message"] == (
        "alias cycle: claude-4.5-sonnet-thinking -> claude-3.7-sonnet-thinking"
        " -> claude-4.5-sonnet-thinking; an alias may not lead back to itself."
    )
    assert gw.admin("PUT", "/aliases/ring-a", {"targets": ["ring-b"]}).status_code == 200
    assert gw.admin("PUT", "/aliases/ring-b", {"targets": ["ring-a"]}).status_code == 400
    bad_bodies: list[dict[str, object]] = [
        {"targets": []},
        {"targets": ["has space"]},
        {"targets": ["x", "x"]},
        {"wrong": 1},
    ]
    for bad in bad_bodies:
        assert gw.admin("PUT", "/aliases/bad", bad).status_code == 400, bad
    # The refused changes left the table as it was: the thinking model is still itself.
    api(gw).chat.completions.create(model="claude-4.5-sonnet-thinking", messages=HELLO)
    assert last_upstream(gw)["modelName"] == "claude-4.5-sonnet-thinking"
    gw.admin("DELETE", "/aliases/ring-a")

    # An alias whose targets no account offers: 404, naming both.
    assert gw.admin("PUT", "/aliases/ghost", {"targets": ["ghost-model"]}).status_code == 200
    with pytest.raises(openai.NotFoundError) as missing:
        api(gw).chat.completions.create(model="ghost", messages=HELLO)
    assert isinstance(missing.value.body, dict)
    assert missing.value.body["message"] == (
        "The model 'ghost' (an alias of 'ghost-model') does not exist or is not offered by any account."
    )
    assert "ghost" not in {m.id for m in api(gw).models.list()}
    gw.admin("DELETE", "/aliases/ghost")


def test_allow_lists_apply_to_the_alias_and_to_the_served_model(gw: Stack) -> None:
    def license_for(*models: str) -> str:
        created = gw.admin("POST", "/licenses", {"name": "-".join(models), "allowed_models": list(models)})
        return str(created.json()["key"])

    by_alias = api(gw, license_for("gpt-4o"))
    assert by_alias.chat.completions.create(model="gpt-4o", messages=HELLO).model == "gpt-4o"
    with pytest.raises(openai.PermissionDeniedError):
        by_alias.chat.completions.create(model="gpt-5.2", messages=HELLO)
    assert {m.id for m in by_alias.models.list()} == {"gpt-4o"}

    by_target = api(gw, license_for("gpt-5.2"))
    assert by_target.chat.completions.create(model="gpt-4o", messages=HELLO).model == "gpt-4o"
    assert last_upstream(gw)["modelName"] == "gpt-5.2"
    assert {"gpt-5.2", "gpt-4o", "gpt-4.1"} <= {m.id for m in by_target.models.list()}

    elsewhere = api(gw, license_for("composer-1"))
    with pytest.raises(openai.PermissionDeniedError) as caught:
        elsewhere.chat.completions.create(model="gpt-4o", messages=HELLO)
    assert isinstance(caught.value.body, dict)
    assert (
        caught.value.body["message"] == "This license may not use the model 'gpt-4o' (served by 'gpt-5.2')."
    )
    with pytest.raises(openai.PermissionDeniedError):
        elsewhere.chat.completions.create(model="team-fast", messages=HELLO)


def test_max_suffix_and_max_mode_field_reach_the_upstream(gw: Stack) -> None:
    client = api(gw)
    answer = client.chat.completions.create(model="claude-4.5-sonnet-max", messages=HELLO)
    assert answer.model == "claude-4.5-sonnet-max"
    assert last_upstream(gw) == {"modelName": "claude-4.5-sonnet", "maxMode": True}
    entry = newest_log_entry(gw)
    assert (entry["model"], entry["requested_model"]) == ("claude-4.5-sonnet", "claude-4.5-sonnet-max")

    client.chat.completions.create(model="gpt-5.2", messages=HELLO, extra_body={"max_mode": True})
    assert last_upstream(gw) == {"modelName": "gpt-5.2", "maxMode": True}

    # Through an alias, streamed.
    stream = client.chat.completions.create(
        model="claude-3.7-sonnet-thinking-max", messages=HELLO, stream=True
    )
    assert {chunk.model for chunk in stream} == {"claude-3.7-sonnet-thinking-max"}
    assert last_upstream(gw) == {"modelName": "claude-4.5-sonnet-thinking", "maxMode": True}

    # A model whose own name ends in -max is not Max mode; nor is a plain request.
    client.chat.completions.create(model="gpt-5.1-codex-max", messages=HELLO)
    assert last_upstream(gw) == {"modelName": "gpt-5.1-codex-max"}
    client.chat.completions.create(model="claude-4.5-sonnet", messages=HELLO)
    assert "maxMode" not in last_upstream(gw)

    listed = {m.id: m.model_dump() for m in client.models.list()}
    sonnet = listed["claude-4.5-sonnet"]
    assert (sonnet["supports_max_mode"], sonnet["max_mode_context_window"], sonnet["context_window"]) == (
        True,
        1_000_000,
        200_000,
    )
    assert sonnet["display_name"] == "Claude 4.5 Sonnet" and sonnet["supports_tools"] is True
    assert listed["claude-4.5-sonnet-thinking"]["supports_thinking"] is True


def test_max_mode_required_tells_the_caller_what_to_do(gw: Stack) -> None:
    client = api(gw)
    gw.sim_control("tokens", {"token": gw.token, "max_only": ["claude-4.5-opus-high"]})
    try:
        # Cursor's own refusal (the account's report predates the change).
        sent = len(gw.chat_requests())
        with pytest.raises(openai.BadRequestError) as caught:
            client.chat.completions.create(model="claude-4.5-opus-high", messages=HELLO)
        assert len(gw.chat_requests()) == sent + 1
        assert caught.value.code == "max_mode_required"
        assert "'-max'" in caught.value.message and '"max_mode": true' in caught.value.message

        # Once the account reports it, core answers without asking Cursor.
        refresh_primary(gw)
        sent = len(gw.chat_requests())
        with pytest.raises(openai.BadRequestError) as caught:
            client.chat.completions.create(model="claude-4.5-opus-high", messages=HELLO)
        assert len(gw.chat_requests()) == sent
        assert caught.value.code == "max_mode_required"
        assert "'claude-4.5-opus-high-max'" in caught.value.message
        listed = {m.id: m.model_dump() for m in client.models.list()}
        assert listed["claude-4.5-opus-high"]["max_mode_only"] is True
        assert listed["claude-4-opus"]["max_mode_only"] is True  # an alias shows its target's facts

        answer = client.chat.completions.create(model="claude-4.5-opus-high-max", messages=HELLO)
        assert answer.choices[0].message.content
        assert last_upstream(gw) == {"modelName": "claude-4.5-opus-high", "maxMode": True}
    finally:
        gw.sim_control("tokens", {"token": gw.token})
        refresh_primary(gw)


async def test_grpc_answer_records_the_served_model(gw: Stack) -> None:
    metadata = (("authorization", f"Bearer {gw.license}"),)
    request = chat_pb2.ChatRequest(
        model="claude-3.7-sonnet",
        messages=[chat_pb2.Message(role=chat_pb2.ROLE_USER, content=[chat_pb2.ContentPart(text="hi")])],
    )
    async with grpc.aio.insecure_channel(gw.grpc_target) as channel:
        stub = chat_pb2_grpc.ChatServiceStub(channel)
        answer = await stub.Chat(request, metadata=metadata, timeout=30)
        assert (answer.model, answer.served_model) == ("claude-3.7-sonnet", "claude-4.5-sonnet")
        events = [event async for event in stub.StreamChat(request, metadata=metadata, timeout=30)]
        assert events[-1].finish.served_model == "claude-4.5-sonnet"
        request.model = "gpt-5.2"
        request.max_mode = True
        assert (await stub.Chat(request, metadata=metadata, timeout=30)).served_model == "gpt-5.2"
        assert last_upstream(gw)["maxMode"] is True

        admin = admin_pb2_grpc.AdminServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await admin.SetAlias(
                admin_pb2.SetAliasRequest(name="claude-4.5-sonnet", targets=["claude-3.5-sonnet"]),
                metadata=(("authorization", f"Bearer {ADMIN_KEY}"),),
                timeout=30,
            )
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "alias cycle: claude-4.5-sonnet -> claude-3.5-sonnet" in (caught.value.details() or "")


# --- bad alias tables stop core at start ---


def start_core_expecting_failure(tmp: Path, aliases: str) -> str:
    env = {
        **os.environ,
        "CURSORGATE_ENV_FILE": str(tmp / "none.env"),
        "CURSORGATE_DATABASE_URL": f"sqlite+aiosqlite:///{tmp / 'db.sqlite'}",
        "CURSORGATE_GRPC_PORT": "0",
        "CURSORGATE_MODEL_ALIASES": aliases,
    }
    done = subprocess.run([sys.executable, "-m", "core"], env=env, cwd=ROOT, capture_output=True, timeout=60)
    assert done.returncode != 0
    output = done.stderr.decode()
    assert "Traceback" not in output
    return output


@pytest.mark.parametrize(
    ("aliases", "expected"),
    [
        ('{"broken": ', "CURSORGATE_MODEL_ALIASES: not valid JSON (Expecting value at position 11)"),
        ('{"a": "b", "b": "a"}', "CURSORGATE_MODEL_ALIASES: alias cycle: a -> b -> a"),
        (
            '{"claude-4.5-sonnet": "claude-3.5-sonnet"}',
            "alias cycle: claude-4.5-sonnet -> claude-3.5-sonnet -> claude-4.5-sonnet",
        ),
        ('["gpt-5.2"]', "CURSORGATE_MODEL_ALIASES: expected a JSON object"),
    ],
)
def test_a_bad_alias_table_stops_core_with_a_clear_error(tmp_path: Path, aliases: str, expected: str) -> None:
    output = start_core_expecting_failure(tmp_path, aliases)
    assert "cursorgate core: invalid configuration" in output
    assert expected in output
