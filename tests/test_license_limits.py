"""Per-license RPM, TPM and token budgets, end to end: real simulator, core(s), facade(s), counted in
process or in a real redis-server. Concurrent bursts must let exactly the number through that the
limit allows; the rest get 429 with Retry-After in each API's shape."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from grpc_status import rpc_status

from cursorgate.v1 import admin_pb2, admin_pb2_grpc, errors_pb2
from tests.procs import Stack, start_stack
from tests.store_backends import ADMIN_KEY
from tests.test_shared_state import redis_url, second_replica

__all__ = ["redis_url"]

MODEL = "gpt-5.2"
BURST = 20
# A prompt of one user message of 84 characters: the gateway estimates 84 + 16 (its per-message
# overhead) = 100 characters, at 4 a token: 25 tokens. The directive keeps each call ~1.2 s long,
# so a burst's calls are all admitted while the first are still running.
PROMPT_TOKENS_ESTIMATE = 25


def prompt(directive: str) -> str:
    """84 characters ending in a simulator directive line."""
    line = f"\nsim: {directive}"
    return "p" * (84 - len(line)) + line


PROMPT = prompt("chunks=3 delay_ms=400")


@pytest.fixture(params=["memory", "redis"])
def backend(request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    """Extra environment for core: nothing (in-process counters), or a Redis URL."""
    if request.param == "memory":
        yield {}
        return
    yield {"CURSORGATE_REDIS_URL": request.getfixturevalue("redis_url")}


def gateway(tmp_path: Path, env: dict[str, str]) -> Stack:
    return start_stack(tmp_path, {"CURSORGATE_ADMIN_KEY": ADMIN_KEY, **env})


def new_license(stack: Stack, **limits: object) -> tuple[str, dict[str, Any]]:
    created = stack.admin("POST", "/licenses", {"name": "limited", **limits})
    assert created.status_code == 201, created.text
    return created.json()["key"], created.json()["license"]


def licenses(stack: Stack) -> dict[str, dict[str, Any]]:
    answer = stack.admin("GET", "/licenses")
    assert answer.status_code == 200, answer.text
    return {lic["id"]: lic for lic in answer.json()["licenses"]}


def chat(url: str, key: str, content: str = PROMPT) -> httpx.Response:
    return httpx.post(
        f"{url}/chat/completions",
        json={"model": MODEL, "messages": [{"role": "user", "content": content}]},
        headers={"authorization": f"Bearer {key}"},
        timeout=60,
    )


def burst(urls: list[str], key: str, n: int = BURST) -> list[httpx.Response]:
    """`n` chats at once, spread over the facades in `urls`."""
    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(lambda i: chat(urls[i % len(urls)], key), range(n)))


def split(answers: list[httpx.Response]) -> tuple[list[httpx.Response], list[httpx.Response]]:
    ok = [a for a in answers if a.status_code == 200]
    refused = [a for a in answers if a.status_code == 429]
    assert len(ok) + len(refused) == len(answers), [
        a.text for a in answers if a.status_code not in (200, 429)
    ]
    return ok, refused


def assert_refused(answer: httpx.Response, code: str, low: int, high: int) -> None:
    assert answer.status_code == 429
    error = answer.json()["error"]
    assert error["code"] == code, error
    assert low <= int(answer.headers["retry-after"]) <= high, answer.headers.get("retry-after")


def next_midnight_utc() -> float:
    today = dt.datetime.now(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return (today + dt.timedelta(days=1)).timestamp()


# --- RPM ---------------------------------------------------------------------------------------


def test_rpm_holds_under_a_concurrent_burst(tmp_path: Path, backend: dict[str, str]) -> None:
    stack = gateway(tmp_path, backend)
    try:
        key, _ = new_license(stack, rpm_limit=5)
        ok, refused = split(burst([stack.base_url], key))
        assert (len(ok), len(refused)) == (5, 15)
        for answer in refused:
            assert_refused(answer, "rate_limit_exceeded", 1, 60)
            assert "5 requests per minute" in answer.json()["error"]["message"]

        # Anthropic's shape for the same refusal, with its Retry-After.
        anthropic = httpx.post(
            f"{stack.base_url}/messages",
            json={"model": MODEL, "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]},
            headers={"x-api-key": key, "anthropic-version": "2023-06-01"},
            timeout=30,
        )
        assert anthropic.status_code == 429
        assert anthropic.json()["type"] == "error"
        assert anthropic.json()["error"]["type"] == "rate_limit_error"
        assert 1 <= int(anthropic.headers["retry-after"]) <= 60

        # A stream is refused before it starts, and the Responses API refuses the same way.
        streamed = httpx.post(
            f"{stack.base_url}/chat/completions",
            json={"model": MODEL, "stream": True, "messages": [{"role": "user", "content": "hi"}]},
            headers={"authorization": f"Bearer {key}"},
            timeout=30,
        )
        assert_refused(streamed, "rate_limit_exceeded", 1, 60)
        responses = httpx.post(
            f"{stack.base_url}/responses",
            json={"model": MODEL, "input": "hi"},
            headers={"authorization": f"Bearer {key}"},
            timeout=30,
        )
        assert_refused(responses, "rate_limit_exceeded", 1, 60)
    finally:
        stack.stop()


async def test_grpc_callers_get_resource_exhausted_with_error_info(tmp_path: Path) -> None:
    from cursorgate.v1 import chat_pb2, chat_pb2_grpc

    stack = gateway(tmp_path, {})
    try:
        key, _ = new_license(stack, rpm_limit=1)
        request = chat_pb2.ChatRequest(model=MODEL)
        request.messages.add(role=chat_pb2.ROLE_USER).content.add(text="hello")
        auth = (("authorization", f"Bearer {key}"),)
        async with grpc.aio.insecure_channel(stack.grpc_target) as channel:
            stub = chat_pb2_grpc.ChatServiceStub(channel)
            await stub.Chat(request, metadata=auth)
            with pytest.raises(grpc.aio.AioRpcError) as exc:
                await stub.Chat(request, metadata=auth)
        assert exc.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        status = rpc_status.from_call(exc.value)
        assert status is not None
        info = errors_pb2.ErrorInfo()
        assert status.details[0].Unpack(info)
        assert info.code == errors_pb2.ERROR_CODE_RATE_LIMITED
        assert info.reason == "LICENSE_RPM_EXCEEDED"
        assert 0 < info.retry_after_ms <= 60_000
    finally:
        stack.stop()


# --- TPM ---------------------------------------------------------------------------------------


def test_tpm_holds_under_a_concurrent_burst(tmp_path: Path, backend: dict[str, str]) -> None:
    stack = gateway(tmp_path, backend)
    try:
        # Four prompts of 25 estimated tokens fit in 110; a fifth (125) does not.
        key, _ = new_license(stack, tpm_limit=110)
        ok, refused = split(burst([stack.base_url], key))
        assert (len(ok), len(refused)) == (4, 16)
        for answer in refused:
            assert_refused(answer, "rate_limit_exceeded", 1, 60)
            assert "110 tokens per minute" in answer.json()["error"]["message"]
        # Settled to the real usage (well above 25 each): the minute stays full.
        assert all(a.json()["usage"]["total_tokens"] > PROMPT_TOKENS_ESTIMATE for a in ok)
        assert_refused(chat(stack.base_url, key), "rate_limit_exceeded", 1, 60)

        # A prompt larger than the whole limit can never fit: said so.
        big = chat(stack.base_url, new_license(stack, tpm_limit=10)[0])
        assert big.status_code == 429 and "larger than the license's limit" in big.json()["error"]["message"]
    finally:
        stack.stop()


# --- budgets -----------------------------------------------------------------------------------


def test_budget_holds_survives_a_restart_and_resets_with_the_period(
    tmp_path: Path, backend: dict[str, str]
) -> None:
    stack = gateway(tmp_path, backend)
    try:
        key, lic = new_license(stack, token_budget=110, budget_period="day")
        assert lic["budget_used"] == "0" and lic["budget_period"] == "day"
        assert dt.datetime.fromisoformat(lic["budget_resets_at"]).timestamp() == next_midnight_utc()

        ok, refused = split(burst([stack.base_url], key))
        assert (len(ok), len(refused)) == (4, 16)
        seconds_to_midnight = next_midnight_utc() - time.time()
        for answer in refused:
            assert_refused(
                answer, "insufficient_quota", int(seconds_to_midnight) - 30, int(seconds_to_midnight) + 30
            )
            assert "budget of 110 tokens per day" in answer.json()["error"]["message"]
        spent = sum(a.json()["usage"]["total_tokens"] for a in ok)
        assert spent > 110  # real usage: completions count too

        used = wait_for_budget(stack, lic["id"], spent)
        assert used == spent

        # A restart keeps the count: still refused, and listed as before.
        stack.restart_core()
        assert licenses(stack)[lic["id"]]["budget_used"] == str(spent)
        assert_refused(chat(stack.base_url, key), "insufficient_quota", 1, 86_400)

        # The next day (core's clock a day ahead): a new period, counted from 0.
        stack.core.stop()
        stack.core.env = {**stack.core.env, "CURSORGATE_LIMITS_CLOCK_OFFSET": "86400"}
        stack.core.start()
        fresh = licenses(stack)[lic["id"]]
        assert fresh["budget_used"] == "0"
        resets = dt.datetime.fromisoformat(fresh["budget_resets_at"]).timestamp()
        assert resets == next_midnight_utc() + 86_400
        answer = chat(stack.base_url, key)
        assert answer.status_code == 200, answer.text
        wait_for_budget(stack, lic["id"], answer.json()["usage"]["total_tokens"])
    finally:
        stack.stop()


def test_failed_and_cancelled_calls_settle(tmp_path: Path) -> None:
    stack = gateway(tmp_path, {})
    try:
        key, lic = new_license(stack, token_budget=1000, budget_period="month")
        # Cursor fails before answering: nothing was used, and nothing stays reserved.
        failed = chat(stack.base_url, key, prompt("error=bad_model"))
        assert failed.status_code >= 400
        assert wait_for_budget(stack, lic["id"], 1, timeout=2) == 0

        # The caller goes away mid-answer (no usage reported): the prompt's estimate is charged.
        body = {
            "model": MODEL,
            "stream": True,
            "messages": [{"role": "user", "content": prompt("chunks=50 delay_ms=200")}],
        }
        with httpx.stream(
            "POST",
            f"{stack.base_url}/chat/completions",
            json=body,
            headers={"authorization": f"Bearer {key}"},
            timeout=30,
        ) as stream:
            assert stream.status_code == 200
            lines = stream.iter_lines()
            assert any(line.startswith("data:") for line in lines)
        assert wait_for_budget(stack, lic["id"], PROMPT_TOKENS_ESTIMATE) == PROMPT_TOKENS_ESTIMATE
    finally:
        stack.stop()


def wait_for_budget(stack: Stack, license_id: str, expected: int, timeout: float = 10) -> int:
    """The listed budget count once it reaches `expected` (settling runs after the answer)."""
    deadline = time.monotonic() + timeout
    while True:
        used = int(licenses(stack)[license_id]["budget_used"])
        if used >= expected or time.monotonic() > deadline:
            return used
        time.sleep(0.1)


# --- two cores, one Redis ----------------------------------------------------------------------


def test_two_cores_sharing_redis_hold_one_limit(tmp_path: Path, redis_url: str) -> None:
    stack = gateway(tmp_path, {"CURSORGATE_REDIS_URL": redis_url})
    core_b, facade_b = second_replica(stack, tmp_path)
    try:
        # Made before core B starts, so that B loads it from the shared database.
        key, lic = new_license(stack, rpm_limit=6, token_budget=1_000_000, budget_period="month")
        core_b.start()
        facade_b.start()
        url_b = f"http://127.0.0.1:{facade_b.port}/cursor/v1"
        ok, refused = split(burst([stack.base_url, url_b], key))
        assert (len(ok), len(refused)) == (6, 14)
        for answer in refused:
            assert_refused(answer, "rate_limit_exceeded", 1, 60)
        # Both cores count into one budget: the sum of what the six calls reported.
        spent = sum(a.json()["usage"]["total_tokens"] for a in ok)
        assert wait_for_budget(stack, lic["id"], spent) == spent
    finally:
        facade_b.stop()
        core_b.stop()
        stack.stop()


def test_redis_away_limits_still_hold_in_process(tmp_path: Path) -> None:
    from tests.procs import free_port

    stack = gateway(tmp_path, {"CURSORGATE_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"})
    try:
        key, _ = new_license(stack, rpm_limit=2)
        ok, refused = split(burst([stack.base_url], key, 5))
        assert (len(ok), len(refused)) == (2, 3)
        assert "counting in this process" in stack.core.log.read_text()
    finally:
        stack.stop()


# --- the admin API -----------------------------------------------------------------------------


async def test_admin_limits_fields_and_bad_input(tmp_path: Path) -> None:
    stack = gateway(tmp_path, {})
    try:
        now = dt.datetime.now(dt.UTC)
        monday = (now + dt.timedelta(days=7 - now.weekday())).replace(
            hour=0, minute=0, second=0, microsecond=0
        )
        key, lic = new_license(stack, rpm_limit=5, tpm_limit=1000, token_budget=5000, budget_period="Week")
        assert (lic["rpm_limit"], lic["tpm_limit"]) == (5, 1000)
        assert (lic["token_budget"], lic["budget_period"], lic["budget_used"]) == ("5000", "week", "0")
        assert dt.datetime.fromisoformat(lic["budget_resets_at"]) == monday

        before = licenses(stack)
        bad_creates: list[tuple[dict[str, object], str]] = [
            ({"rpm_limit": 0}, "rpm_limit"),
            ({"rpm_limit": -3}, "rpm_limit"),
            ({"tpm_limit": 0}, "tpm_limit"),
            ({"token_budget": -1, "budget_period": "day"}, "token_budget"),
            ({"token_budget": 100}, "token_budget: needs a budget_period"),
            ({"token_budget": 100, "budget_period": "fortnight"}, "budget_period"),
            ({"budget_period": "day"}, "budget_period: applies only with a token_budget"),
            ({"rpm_limit": "lots"}, "Invalid request body"),
        ]
        for body, start in bad_creates:
            answer = stack.admin("POST", "/licenses", body)
            assert answer.status_code == 400, (body, answer.text)
            assert answer.json()["error"]["message"].startswith(start), (body, answer.text)
        assert licenses(stack) == before  # nothing made

        path = f"/licenses/{lic['id']}"
        bad_patches: list[tuple[dict[str, object], str]] = [
            ({"rpm_limit": 0, "name": "renamed"}, "rpm_limit"),
            ({"tpm_limit": -1}, "tpm_limit"),
            ({"budget_period": "year"}, "budget_period"),
            ({"budget_period": ""}, "token_budget: needs a budget_period"),
            ({"token_budget": 5, "clear_token_budget": True}, "token_budget and clear_token_budget"),
            ({"clear_token_budget": True, "budget_period": "day"}, "budget_period: applies only"),
        ]
        for body, start in bad_patches:
            answer = stack.admin("PATCH", path, body)
            assert answer.status_code == 400, (body, answer.text)
            assert answer.json()["error"]["message"].startswith(start), (body, answer.text)
        assert licenses(stack) == before  # nothing changed

        changed = stack.admin("PATCH", path, {"rpm_limit": 7, "tpm_limit": None, "budget_period": "month"})
        assert changed.status_code == 200, changed.text
        body = changed.json()
        assert body["rpm_limit"] == 7 and "tpm_limit" not in body
        assert (body["token_budget"], body["budget_period"]) == ("5000", "month")
        first = (now.replace(day=28) + dt.timedelta(days=4)).replace(
            day=1, hour=0, minute=0, second=0, microsecond=0
        )
        assert dt.datetime.fromisoformat(body["budget_resets_at"]) == first

        # The gRPC AdminService sees the same fields, and refuses bad input with INVALID_ARGUMENT.
        auth = (("authorization", f"Bearer {ADMIN_KEY}"),)
        async with grpc.aio.insecure_channel(stack.grpc_target) as channel:
            stub = admin_pb2_grpc.AdminServiceStub(channel)
            listed = await stub.ListLicenses(admin_pb2.ListLicensesRequest(), metadata=auth)
            seen = next(x for x in listed.licenses if x.id == lic["id"])
            assert seen.HasField("rpm_limit") and seen.rpm_limit == 7 and not seen.HasField("tpm_limit")
            assert (seen.token_budget, seen.budget_period, seen.budget_used) == (5000, "month", 0)
            assert seen.budget_resets_at.ToDatetime(dt.UTC) == first
            made = await stub.CreateLicense(
                admin_pb2.CreateLicenseRequest(
                    name="grpc", tpm_limit=300, token_budget=9, budget_period="day"
                ),
                metadata=auth,
            )
            assert made.license.tpm_limit == 300 and made.license.token_budget == 9
            assert made.license.budget_period == "day"
            with pytest.raises(grpc.aio.AioRpcError) as exc:
                await stub.UpdateLicense(
                    admin_pb2.UpdateLicenseRequest(id=lic["id"], rpm_limit=-1), metadata=auth
                )
            assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT

        cleared = stack.admin("PATCH", path, {"token_budget": None, "rpm_limit": None}).json()
        assert "token_budget" not in cleared and cleared["budget_period"] == "" and "rpm_limit" not in cleared
        # Without limits the key is served as before.
        assert chat(stack.base_url, key, "hello").status_code == 200
    finally:
        stack.stop()
