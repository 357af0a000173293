"""The account pool over real processes: failover, cool-down, disabling, per-account models."""

from __future__ import annotations

import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from tests.procs import Stack
from tests.store_backends import BACKENDS, admin_stack, database_url, distinct_token

pytestmark = pytest.mark.every_dialect

__all__ = ["admin_stack", "database_url"]

HELLO: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hello"}]


def add(stack: Stack, token: str, label: str) -> dict[str, object]:
    answer = stack.admin("POST", "/accounts", {"token": token, "label": label})
    assert answer.status_code == 201, answer.text
    account: dict[str, object] = answer.json()
    return account


def by_label(stack: Stack) -> dict[str, dict[str, object]]:
    return {str(a["label"]): a for a in stack.admin("GET", "/accounts").json()["accounts"]}


@pytest.mark.parametrize("database_url", BACKENDS, indirect=True)
def test_twenty_requests_survive_a_limited_and_a_rejected_account(admin_stack: Stack) -> None:
    limited, rejected = distinct_token("auth0|user_limited"), distinct_token("auth0|user_rejected")
    assert len({t[-16:] for t in (admin_stack.token, limited, rejected)}) == 3
    add(admin_stack, limited, "limited")
    add(admin_stack, rejected, "rejected")
    # Misbehaviour starts after the accounts were added (and their models fetched).
    admin_stack.sim_control("tokens", {"token": limited, "rate_limited_until": 120, "retry_after": 90})
    admin_stack.sim_control("tokens", {"token": rejected, "reject": True})

    api = openai.OpenAI(base_url=admin_stack.base_url, api_key=admin_stack.license, max_retries=0)
    for n in range(20):
        answer = api.chat.completions.create(
            model="composer-1", messages=[{"role": "user", "content": f"n{n}"}]
        )
        assert f"n{n}" in (answer.choices[0].message.content or "")

    accounts = by_label(admin_stack)
    assert accounts["rejected"]["status"] == "disabled" and accounts["rejected"]["enabled"] is False
    assert "rejected" in str(accounts["rejected"]["disabled_reason"])
    assert accounts["limited"]["status"] == "cooling_down" and "rate_limited" in str(
        accounts["limited"]["last_error"]
    )
    assert "cooldown_until" in accounts["limited"]
    assert accounts["CURSOR_TOKEN"]["status"] == "active"
    served = {r["account_id"] for r in admin_stack.admin("GET", "/requests").json()["requests"]}
    assert served == {accounts["CURSOR_TOKEN"]["id"]}

    # Re-enabling is the admin's call.
    rid = accounts["rejected"]["id"]
    assert admin_stack.admin("PATCH", f"/accounts/{rid}", {"enabled": True}).json()["status"] == "active"


def model_ids(api: openai.OpenAI) -> set[str]:
    """The models listed, aliases aside (they are listed too, marked `is_alias`)."""
    return {m.id for m in api.models.list() if not getattr(m, "is_alias", False)}


@pytest.mark.parametrize("database_url", BACKENDS, indirect=True)
def test_model_list_follows_each_accounts_available_models(admin_stack: Stack) -> None:
    api = openai.OpenAI(base_url=admin_stack.base_url, api_key=admin_stack.license, max_retries=0)
    second = distinct_token("auth0|user_second")
    admin_stack.sim_control("tokens", {"token": admin_stack.token, "models": ["composer-1", "gpt-5.2"]})
    admin_stack.sim_control(
        "tokens", {"token": second, "models": ["gpt-5.2", "claude-4.5-sonnet", "sim-new-model"]}
    )
    primary = by_label(admin_stack)["CURSOR_TOKEN"]
    admin_stack.admin("POST", f"/accounts/{primary['id']}/refresh")
    assert model_ids(api) == {"composer-1", "gpt-5.2"}

    account = add(admin_stack, second, "second")
    assert model_ids(api) == {
        "composer-1",
        "gpt-5.2",
        "claude-4.5-sonnet",
        "sim-new-model",
    }
    # A model only the second account offers is routed to it.
    answer = api.chat.completions.create(model="sim-new-model", messages=HELLO)
    assert answer.model == "sim-new-model"

    admin_stack.admin("PATCH", f"/accounts/{account['id']}", {"enabled": False})
    assert model_ids(api) == {"composer-1", "gpt-5.2"}
    with pytest.raises(openai.NotFoundError):
        api.chat.completions.create(model="sim-new-model", messages=HELLO)
