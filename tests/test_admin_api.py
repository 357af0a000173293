"""The admin API end to end: licenses made through it gate /cursor/v1, keys and tokens stay secret."""

from __future__ import annotations

import grpc
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from cursorgate.v1 import admin_pb2, admin_pb2_grpc
from tests.procs import Stack
from tests.store_backends import ADMIN_KEY, BACKENDS, admin_stack, database_url, distinct_token

__all__ = ["admin_stack", "database_url"]

HELLO: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hello"}]


def client(stack: Stack, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=stack.base_url, api_key=key, max_retries=0)


@pytest.mark.parametrize("database_url", BACKENDS, indirect=True)
def test_license_lifecycle(admin_stack: Stack) -> None:
    created = admin_stack.admin("POST", "/licenses", {"name": "team-a"})
    assert created.status_code == 201, created.text
    key = created.json()["key"]
    lic = created.json()["license"]
    assert key.startswith("sk-cg-") and key.startswith(lic["key_prefix"])

    answer = client(admin_stack, key).chat.completions.create(model="composer-1", messages=HELLO)
    assert "hello" in (answer.choices[0].message.content or "")

    listed = admin_stack.admin("GET", "/licenses").json()["licenses"]
    mine = next(x for x in listed if x["id"] == lic["id"])
    assert int(mine["requests_used"]) == 1 and "key" not in mine and key not in str(listed)

    log = admin_stack.admin("GET", "/requests").json()["requests"]
    entry = next(r for r in log if r["license_id"] == lic["id"])
    assert entry["license_name"] == "team-a" and entry["model"] == "composer-1"
    assert entry["outcome"] == "ok" and entry["account_id"].startswith("acc_")
    assert entry["completion_tokens"] > 0 and entry["latency_ms"] >= 0

    revoked = admin_stack.admin("POST", f"/licenses/{lic['id']}/revoke")
    assert revoked.status_code == 200 and revoked.json()["revoked"] is True
    with pytest.raises(openai.AuthenticationError):
        client(admin_stack, key).chat.completions.create(model="composer-1", messages=HELLO)
    with pytest.raises(openai.AuthenticationError):
        client(admin_stack, key).models.list()


def test_license_limits(admin_stack: Stack) -> None:
    body = {"name": "limited", "allowed_models": ["composer-1"], "request_quota": 1}
    key = admin_stack.admin("POST", "/licenses", body).json()["key"]
    api = client(admin_stack, key)
    assert [m.id for m in api.models.list()] == ["composer-1"]
    with pytest.raises(openai.PermissionDeniedError):
        api.chat.completions.create(model="gpt-5.2", messages=HELLO)
    api.chat.completions.create(model="composer-1", messages=HELLO)
    with pytest.raises(openai.RateLimitError) as exc:
        api.chat.completions.create(model="composer-1", messages=HELLO)
    assert exc.value.code == "insufficient_quota"

    past = admin_stack.admin("POST", "/licenses", {"expires_at": "2020-01-01T00:00:00Z"})
    assert past.status_code == 400 and past.json()["error"]["message"].startswith("expires_at")
    soon = admin_stack.admin("POST", "/licenses", {"expires_at": "2999-01-01T00:00:00Z"}).json()
    assert soon["license"]["expires_at"].startswith("2999-01-01")
    bad = admin_stack.admin("POST", "/licenses", {"unknown": 1})
    assert bad.status_code == 400 and bad.json()["error"]["type"] == "invalid_request_error"


def test_admin_key_required(admin_stack: Stack, stack: Stack) -> None:
    for key in ("", "wrong", ADMIN_KEY + "x"):
        answer = admin_stack.admin("GET", "/accounts", key=key)
        assert answer.status_code == 401 and answer.json()["error"]["code"] == "invalid_admin_key"
    # The session stack has no admin key: the admin API is off, whatever is sent.
    off = stack.admin("GET", "/licenses", key="anything")
    assert off.status_code == 403 and "CURSORGATE_ADMIN_KEY" in off.json()["error"]["message"]
    # A license is not an admin key.
    assert admin_stack.admin("GET", "/licenses", key=admin_stack.license).status_code == 401


async def test_grpc_admin_service(admin_stack: Stack) -> None:
    async with grpc.aio.insecure_channel(admin_stack.grpc_target) as channel:
        stub = admin_pb2_grpc.AdminServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await stub.ListAccounts(
                admin_pb2.ListAccountsRequest(), metadata=(("authorization", "Bearer no"),)
            )
        assert exc.value.code() == grpc.StatusCode.UNAUTHENTICATED
        auth = (("authorization", f"Bearer {ADMIN_KEY}"),)
        accounts = await stub.ListAccounts(admin_pb2.ListAccountsRequest(), metadata=auth)
        assert [a.label for a in accounts.accounts] == ["CURSOR_TOKEN"]
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await stub.GetAccount(admin_pb2.GetAccountRequest(id="acc_nope"), metadata=auth)
        assert exc.value.code() == grpc.StatusCode.NOT_FOUND


def test_accounts_tokens_masked(admin_stack: Stack) -> None:
    token = distinct_token("auth0|user_cookie")
    cookie = f"user_cookie%3A%3A{token}"
    added = admin_stack.admin(
        "POST", "/accounts", {"token": cookie, "label": "cookie", "client_version": "2.4.0"}
    )
    assert added.status_code == 201, added.text
    account = added.json()
    assert account["token_masked"] == f"{token[:4]}…{token[-4:]}" and account["status"] == "active"
    assert account["subject"] == "auth0|user_cookie" and account["client_version"] == "2.4.0"
    assert account["models_known"] and account["membership"]["membershipType"] == "pro"
    assert account["usage"]["planUsage"]["limit"] == 2000 and account["last_error"] == ""

    again = admin_stack.admin("POST", "/accounts", {"token": token})
    assert again.status_code == 409 and account["id"] in again.json()["error"]["message"]
    bogus = "not-a-token-but-maybe-a-secret"
    bad = admin_stack.admin("POST", "/accounts", {"token": bogus})
    assert bad.status_code == 400 and bogus not in bad.text
    assert (
        admin_stack.admin("PATCH", f"/accounts/{account['id']}", {"client_version": "x"}).status_code == 400
    )

    every = admin_stack.admin("GET", "/accounts").text
    for secret in (token, admin_stack.token, token.split(".")[1]):
        assert secret not in every
    assert admin_stack.admin("DELETE", f"/accounts/{account['id']}").status_code == 200
    assert admin_stack.admin("GET", f"/accounts/{account['id']}").status_code == 404
    logs = admin_stack.logs()
    assert token not in logs and admin_stack.token not in logs and ADMIN_KEY not in logs


def test_refresh_of_a_rejected_token(admin_stack: Stack) -> None:
    token = distinct_token("auth0|user_refresh")
    account = admin_stack.admin("POST", "/accounts", {"token": token}).json()
    # Rejected on refresh: the token is refused, so the account is disabled with the reason.
    admin_stack.sim_control("tokens", {"token": token, "reject": True})
    refreshed = admin_stack.admin("POST", f"/accounts/{account['id']}/refresh").json()
    assert refreshed["status"] == "disabled" and "usage" in refreshed["last_error"]
    assert refreshed["models_known"]  # the last known list is kept


@pytest.mark.parametrize("database_url", BACKENDS, indirect=True)
def test_update_license_in_place(admin_stack: Stack) -> None:
    created = admin_stack.admin("POST", "/licenses", {"name": "gov", "allowed_models": ["composer-1"]}).json()
    lic, key = created["license"], created["key"]
    path = f"/licenses/{lic['id']}"
    api = client(admin_stack, key)

    with pytest.raises(openai.PermissionDeniedError):
        api.chat.completions.create(model="gpt-5.2", messages=HELLO)
    changed = admin_stack.admin("PATCH", path, {"name": "governed", "allowed_models": ["gpt-5.2"]})
    assert changed.status_code == 200, changed.text
    assert changed.json()["name"] == "governed" and changed.json()["allowed_models"] == ["gpt-5.2"]
    assert api.chat.completions.create(model="gpt-5.2", messages=HELLO).choices[0].message.content
    with pytest.raises(openai.PermissionDeniedError):
        api.chat.completions.create(model="composer-1", messages=HELLO)

    # Disabled, then enabled again: the same key works once more.
    assert admin_stack.admin("PATCH", path, {"enabled": False}).json()["revoked"] is True
    with pytest.raises(openai.AuthenticationError):
        api.chat.completions.create(model="gpt-5.2", messages=HELLO)
    assert admin_stack.admin("PATCH", path, {"enabled": True}).json()["revoked"] is False
    assert api.chat.completions.create(model="gpt-5.2", messages=HELLO).choices[0].message.content

    # A quota of what is already used stops the next request; null lifts it.
    used = int(admin_stack.admin("PATCH", path, {"request_quota": 2}).json()["requests_used"])
    assert used == 2
    with pytest.raises(openai.RateLimitError):
        api.chat.completions.create(model="gpt-5.2", messages=HELLO)
    lifted = admin_stack.admin("PATCH", path, {"request_quota": None, "allowed_models": None}).json()
    assert "request_quota" not in lifted or lifted["request_quota"] in (None, "0", 0)
    assert lifted["allowed_models"] == []
    assert api.chat.completions.create(model="composer-1", messages=HELLO).choices[0].message.content

    # Bad values are a 400 and change nothing.
    before = admin_stack.admin("GET", "/licenses").json()["licenses"]
    bad_values: list[dict[str, object]] = [
        {"request_quota": -1},
        {"expires_at": "2001-01-01T00:00:00Z"},
        {"allowed_models": "gpt-5.2"},
        {"allowed_models": ["gpt-5.2"], "request_quota": -5},
        {"colour": "blue"},
    ]
    for bad in bad_values:
        answer = admin_stack.admin("PATCH", path, bad)
        assert answer.status_code == 400, (bad, answer.text)
        assert set(answer.json()["error"]) == {"message", "type", "param", "code"}
    assert admin_stack.admin("GET", "/licenses").json()["licenses"] == before
    assert admin_stack.admin("PATCH", "/licenses/lic_nope", {"name": "x"}).status_code == 404

    # Changes are stored: they survive a restart of core.
    admin_stack.admin("PATCH", path, {"allowed_models": ["gpt-5.2"]})
    admin_stack.restart_core()
    (after,) = [x for x in admin_stack.admin("GET", "/licenses").json()["licenses"] if x["id"] == lic["id"]]
    assert after["name"] == "governed" and after["allowed_models"] == ["gpt-5.2"]
