"""Nothing is lost when core restarts: licenses, accounts and their state, the request log."""

from __future__ import annotations

import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from tests.procs import Stack
from tests.store_backends import BACKENDS, admin_stack, database_url, distinct_token

__all__ = ["admin_stack", "database_url"]

HELLO: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hello"}]


@pytest.mark.parametrize("database_url", BACKENDS, indirect=True)
def test_everything_survives_a_core_restart(admin_stack: Stack) -> None:
    s = admin_stack
    kept = s.admin(
        "POST", "/licenses", {"name": "kept", "allowed_models": ["composer-1"], "request_quota": 10}
    ).json()
    gone = s.admin("POST", "/licenses", {"name": "gone"}).json()
    api = openai.OpenAI(base_url=s.base_url, api_key=kept["key"], max_retries=0)
    api.chat.completions.create(model="composer-1", messages=HELLO)
    api.chat.completions.create(model="composer-1", messages=HELLO, stream=False)
    s.admin("POST", f"/licenses/{gone['license']['id']}/revoke")

    limited, off = distinct_token("auth0|user_restart_limited"), distinct_token("auth0|user_restart_off")
    s.sim_control("tokens", {"token": off, "models": ["composer-1", "sim-only-model"]})
    labelled = s.admin("POST", "/accounts", {"token": off, "label": "off", "client_version": "2.5.1"}).json()
    s.admin("PATCH", f"/accounts/{labelled['id']}", {"enabled": False})
    s.admin("POST", "/accounts", {"token": limited, "label": "limited"})
    s.sim_control("tokens", {"token": limited, "rate_limited_until": 300, "retry_after": 300})
    # The limited account is least recently used: it is tried first, fails, and cools down.
    openai.OpenAI(base_url=s.base_url, api_key=s.license, max_retries=0).chat.completions.create(
        model="composer-1", messages=HELLO
    )
    before = {a["label"]: a for a in s.admin("GET", "/accounts").json()["accounts"]}
    assert before["limited"]["status"] == "cooling_down"
    log_before = s.admin("GET", "/requests").json()["requests"]

    s.restart_core()

    after = {a["label"]: a for a in s.admin("GET", "/accounts").json()["accounts"]}
    assert set(after) == {"CURSOR_TOKEN", "off", "limited"}
    assert after["off"]["status"] == "disabled" and after["off"]["client_version"] == "2.5.1"
    assert {m["id"] for m in after["off"]["models"]} == {"composer-1", "sim-only-model"}
    assert after["limited"]["status"] == "cooling_down"
    assert after["limited"]["cooldown_until"] == before["limited"]["cooldown_until"]
    assert after["limited"]["last_error"] == before["limited"]["last_error"]

    licenses = {x["name"]: x for x in s.admin("GET", "/licenses").json()["licenses"]}
    assert int(licenses["kept"]["requests_used"]) == 2 and licenses["kept"]["allowed_models"] == [
        "composer-1"
    ]
    assert licenses["gone"]["revoked"] is True
    assert s.admin("GET", "/requests").json()["requests"] == log_before

    api.chat.completions.create(model="composer-1", messages=HELLO)
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=s.base_url, api_key=gone["key"], max_retries=0).models.list()
