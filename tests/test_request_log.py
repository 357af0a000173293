"""The request log's filters and paging, rejected calls in it, and usage over time, end to end
(SQLite, and PostgreSQL when CURSORGATE_TEST_POSTGRES_URL is set)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from cursorgate.v1 import admin_pb2, admin_pb2_grpc
from tests.procs import Stack
from tests.store_backends import ADMIN_KEY, BACKENDS, admin_stack, database_url

__all__ = ["admin_stack", "database_url"]

HELLO: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hello there"}]
# 32 characters: its logged prefix is the first 8 (a quarter), "sk-cg-wr".
WRONG_KEY = "sk-cg-wrong-0123456789abcdefghij"


def client(stack: Stack, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=stack.base_url, api_key=key, max_retries=0)


def traffic(stack: Stack) -> dict[str, Any]:
    """Team A: two composer-1 answers (one streamed); team B (composer-1 only): one answer and a
    refused gpt-5.2; an unknown key: a refused gpt-5.2. Returns the licenses and token counts."""
    a = stack.admin("POST", "/licenses", {"name": "team-a"}).json()
    b = stack.admin("POST", "/licenses", {"name": "team-b", "allowed_models": ["composer-1"]}).json()
    tokens = {"a": 0, "b": 0}
    unary = client(stack, a["key"]).chat.completions.create(model="composer-1", messages=HELLO)
    assert unary.usage is not None
    tokens["a"] += unary.usage.prompt_tokens + unary.usage.completion_tokens
    stream = client(stack, a["key"]).chat.completions.create(
        model="composer-1", messages=HELLO, stream=True, stream_options={"include_usage": True}
    )
    for chunk in stream:
        if chunk.usage is not None:
            tokens["a"] += chunk.usage.prompt_tokens + chunk.usage.completion_tokens
    other = client(stack, b["key"]).chat.completions.create(model="composer-1", messages=HELLO)
    assert other.usage is not None
    tokens["b"] += other.usage.prompt_tokens + other.usage.completion_tokens
    with pytest.raises(openai.PermissionDeniedError):
        client(stack, b["key"]).chat.completions.create(model="gpt-5.2", messages=HELLO)
    with pytest.raises(openai.AuthenticationError):
        client(stack, WRONG_KEY).chat.completions.create(model="gpt-5.2", messages=HELLO)
    assert tokens["a"] > 0 and tokens["b"] > 0
    return {"a": a["license"]["id"], "b": b["license"]["id"], "tokens": tokens}


def requests(stack: Stack, **params: str) -> dict[str, Any]:
    answer = stack.admin("GET", "/requests?" + "&".join(f"{k}={v}" for k, v in params.items()))
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def usage(stack: Stack, **params: str) -> dict[str, dict[str, Any]]:
    """Series by group, bucket values summed over the range."""
    answer = stack.admin("GET", "/usage?" + "&".join(f"{k}={v}" for k, v in params.items()))
    assert answer.status_code == 200, answer.text
    out: dict[str, dict[str, Any]] = {}
    for series in answer.json()["series"]:
        buckets = series["buckets"]
        out[series["group"]] = {
            "label": series["label"],
            "requests": sum(int(b["requests"]) for b in buckets),
            "tokens": sum(int(b["prompt_tokens"]) + int(b["completion_tokens"]) for b in buckets),
            "errors": sum(int(b["errors"]) for b in buckets),
            "ttft": [b["ttft_ms_mean"] for b in buckets],
        }
    return out


@pytest.mark.parametrize("database_url", BACKENDS, indirect=True)
def test_log_filters_paging_and_rejections(admin_stack: Stack) -> None:
    sent = traffic(admin_stack)
    everything = requests(admin_stack)["requests"]
    assert len(everything) == 5
    ids = [int(r["id"]) for r in everything]
    assert ids == sorted(ids, reverse=True)

    mine = requests(admin_stack, license=sent["a"])["requests"]
    assert len(mine) == 2 and {r["outcome"] for r in mine} == {"ok"}
    assert {r["stream"] for r in mine} == {True, False}
    # Time to first token is recorded for streamed and unary answers alike.
    assert all(1 <= r["ttft_ms"] <= r["latency_ms"] + 1 for r in mine)

    rejected = requests(admin_stack, outcome="rejected")["requests"]
    assert sorted(r["outcome"] for r in rejected) == [
        "ERROR_CODE_MODEL_NOT_ALLOWED",
        "ERROR_CODE_UNAUTHENTICATED",
    ]
    anonymous = next(r for r in rejected if r["outcome"] == "ERROR_CODE_UNAUTHENTICATED")
    assert anonymous["license_id"] == "" and anonymous["key_prefix"] == "sk-cg-wr"
    assert anonymous["model"] == "gpt-5.2" and anonymous["ttft_ms"] == 0
    refused = next(r for r in rejected if r["outcome"] == "ERROR_CODE_MODEL_NOT_ALLOWED")
    assert (
        refused["license_id"] == sent["b"]
        and refused["license_name"] == "team-b"
        and refused["key_prefix"] == ""
    )
    listing = admin_stack.admin("GET", "/requests").text
    assert WRONG_KEY not in listing and "wrong-0123" not in listing

    assert len(requests(admin_stack, model="gpt-5.2")["requests"]) == 2
    assert len(requests(admin_stack, outcome="ok")["requests"]) == 3
    assert len(requests(admin_stack, outcome="error")["requests"]) == 2
    assert len(requests(admin_stack, license=sent["b"], outcome="ok")["requests"]) == 1
    accounts = {r["account_id"] for r in everything if r["outcome"] == "ok"}
    assert len(accounts) == 1
    assert len(requests(admin_stack, account=accounts.pop())["requests"]) == 3

    future = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    past = (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S")  # no zone: UTC
    assert requests(admin_stack, since=future)["requests"] == []
    assert len(requests(admin_stack, since=past, until=future)["requests"]) == 5
    assert requests(admin_stack, until=past)["requests"] == []

    # Pages of two, older each time, until next_before_id is 0; together they are the log.
    seen: list[int] = []
    page = requests(admin_stack, limit="2")
    while True:
        seen += [int(r["id"]) for r in page["requests"]]
        if int(page["next_before_id"]) == 0:
            break
        assert len(page["requests"]) == 2
        page = requests(admin_stack, limit="2", before_id=page["next_before_id"])
    assert seen == ids

    for query in ("limit=abc", "before_id=-1", "since=yesterday", "until=2026-13-01", "color=red"):
        bad = admin_stack.admin("GET", f"/requests?{query}")
        assert bad.status_code == 400, (query, bad.text)
        assert bad.json()["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize("database_url", BACKENDS, indirect=True)
def test_usage_series(admin_stack: Stack) -> None:
    sent = traffic(admin_stack)
    tokens = sent["tokens"]

    by_model = usage(admin_stack, group_by="model", bucket="minute")
    assert set(by_model) == {"composer-1", "gpt-5.2"}
    assert by_model["composer-1"]["requests"] == 3 and by_model["composer-1"]["errors"] == 0
    assert by_model["composer-1"]["tokens"] == tokens["a"] + tokens["b"]
    assert all(t >= 1 for t in by_model["composer-1"]["ttft"])
    assert by_model["gpt-5.2"] == {"label": "gpt-5.2", "requests": 2, "tokens": 0, "errors": 2, "ttft": [0]}

    by_license = usage(admin_stack, group_by="license", bucket="hour")
    assert {g: (s["label"], s["requests"], s["errors"], s["tokens"]) for g, s in by_license.items()} == {
        sent["a"]: ("team-a", 2, 0, tokens["a"]),
        sent["b"]: ("team-b", 2, 1, tokens["b"]),
        "": ("", 1, 1, 0),
    }
    by_account = usage(admin_stack, group_by="account", bucket="day")
    assert sorted((s["requests"], s["errors"]) for s in by_account.values()) == [(2, 2), (3, 0)]

    # A window that ends before the traffic: nothing.
    earlier = (datetime.now(UTC) - timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert usage(admin_stack, until=earlier) == {}

    for query in (
        "bucket=week",
        "group_by=color",
        "since=noon",
        "since=2026-11-02T00:00:00Z&until=2026-11-01T00:00:00Z",
        "bucket=minute&since=2026-01-01T00:00:00Z&until=2026-03-01T00:00:00Z",
        "group=model",
    ):
        bad = admin_stack.admin("GET", f"/usage?{query}")
        assert bad.status_code == 400, (query, bad.text)
        assert bad.json()["error"]["type"] == "invalid_request_error"


def test_usage_series_over_grpc(admin_stack: Stack) -> None:
    traffic(admin_stack)

    async def call() -> admin_pb2.GetUsageSeriesResponse:
        async with grpc.aio.insecure_channel(admin_stack.grpc_target) as channel:
            stub = admin_pb2_grpc.AdminServiceStub(channel)
            metadata = (("authorization", f"Bearer {ADMIN_KEY}"),)
            with pytest.raises(grpc.aio.AioRpcError) as bad:
                await stub.GetUsageSeries(
                    admin_pb2.GetUsageSeriesRequest(bucket="fortnight"), metadata=metadata
                )
            assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            with pytest.raises(grpc.aio.AioRpcError) as anonymous:
                await stub.GetUsageSeries(admin_pb2.GetUsageSeriesRequest())
            assert anonymous.value.code() == grpc.StatusCode.UNAUTHENTICATED
            answer: admin_pb2.GetUsageSeriesResponse = await stub.GetUsageSeries(
                admin_pb2.GetUsageSeriesRequest(group_by="model", bucket="day"), metadata=metadata
            )
            return answer

    answer = asyncio.run(call())
    assert answer.bucket_seconds == 86400 and answer.group_by == "model"
    assert [s.group for s in answer.series] == ["composer-1", "gpt-5.2"]  # busiest first
    assert answer.until.seconds - answer.since.seconds == 30 * 86400
    assert all(b.start.seconds % 86400 == 0 for s in answer.series for b in s.buckets)


def test_page_serves_its_chart_library(admin_stack: Stack) -> None:
    """The charting library comes from the gateway itself, under the page's CSP; nothing else
    is served from the vendor directory."""
    page = httpx.get(f"{admin_stack.root_url}/cursor/admin")
    assert '<script src="/cursor/admin/vendor/uPlot.iife.min.js" defer></script>' in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    library = httpx.get(f"{admin_stack.root_url}/cursor/admin/vendor/uPlot.iife.min.js")
    assert library.status_code == 200 and library.headers["content-type"].startswith("text/javascript")
    assert library.text.startswith("/*! https://github.com/leeoniya/uPlot (v1.6.32) */")
    assert library.headers["x-content-type-options"] == "nosniff"
    license_text = httpx.get(f"{admin_stack.root_url}/cursor/admin/vendor/uPlot.LICENSE").text
    assert license_text.startswith("The MIT License")
    for name in ("README.md", "..%2Froutes.py", "admin.js"):
        assert httpx.get(f"{admin_stack.root_url}/cursor/admin/vendor/{name}").status_code == 404
