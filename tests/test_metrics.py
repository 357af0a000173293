"""Prometheus /metrics on the facade and on core's metrics port, read after real traffic through
the real processes (openai SDK -> facade -> core -> simulator)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.procs import Stack, free_port, start_stack

MODEL = "claude-4.5-sonnet"
# The route template as registered: /cursor/v1 and /v1 serve the same endpoint, counted as one.
CHAT_ROUTE = "/chat/completions"


@pytest.fixture(scope="module")
def metered(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, int]]:
    port = free_port()
    stack = start_stack(
        tmp_path_factory.mktemp("metrics"),
        {"CURSORGATE_METRICS_PORT": str(port), "CURSORGATE_UPSTREAM_ATTEMPTS": "3"},
    )
    yield stack, port
    stack.stop()


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(url: str) -> Samples:
    response = httpx.get(url, timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum over every sample of `name` whose labels include `labels` (0 if none)."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


def test_both_endpoints_count_the_traffic_just_sent(metered: tuple[Stack, int]) -> None:
    stack, core_port = metered
    facade_url, core_url = f"{stack.root_url}/metrics", f"http://127.0.0.1:{core_port}/metrics"
    client = openai.OpenAI(base_url=stack.base_url, api_key=stack.license, max_retries=0)
    before_facade, before_core = scrape(facade_url), scrape(core_url)

    # Two streams (with usage), one unary call, one bad key, one upstream failure.
    usage_in = usage_out = 0
    for _ in range(2):
        chunks = list(
            client.chat.completions.create(
                model=MODEL,
                messages=[{"role": "user", "content": "count me\nsim: chunks=4"}],
                stream=True,
                stream_options={"include_usage": True},
            )
        )
        usage = chunks[-1].usage
        assert usage is not None
        usage_in += usage.prompt_tokens
        usage_out += usage.completion_tokens
    reply = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "once"}])
    assert reply.usage is not None
    usage_in += reply.usage.prompt_tokens
    usage_out += reply.usage.completion_tokens
    bad = openai.OpenAI(base_url=stack.base_url, api_key="sk-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.chat.completions.create(model="made-up-model-x", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.InternalServerError) as failed:
        client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "fail\nsim: error=unavailable"}]
        )
    assert failed.value.status_code == 503

    facade, core = scrape(facade_url), scrape(core_url)

    def facade_delta(name: str, **labels: str) -> float:
        return value(facade, name, **labels) - value(before_facade, name, **labels)

    def core_delta(name: str, **labels: str) -> float:
        return value(core, name, **labels) - value(before_core, name, **labels)

    # Facade: by route template, status and model; made-up model names never become labels.
    requests = "cursorgate_facade_requests_total"
    assert facade_delta(requests, route=CHAT_ROUTE, method="POST", status="200", model=MODEL) == 3
    assert facade_delta(requests, route=CHAT_ROUTE, status="401", model="-") == 1
    assert facade_delta(requests, route=CHAT_ROUTE, status="503", model="-") == 1
    assert not any("made-up-model-x" in dict(labels).values() for _, labels in facade)
    assert facade_delta("cursorgate_facade_request_duration_seconds_count", route=CHAT_ROUTE) == 5
    assert facade_delta("cursorgate_facade_time_to_first_token_seconds_count", model=MODEL) == 2

    # Core: the same calls by outcome, as the request log has them.
    core_requests = "cursorgate_core_requests_total"
    assert core_delta(core_requests, outcome="ok", model=MODEL, stream="true") == 2
    assert core_delta(core_requests, outcome="ok", model=MODEL, stream="false") == 1
    assert core_delta(core_requests, outcome="ERROR_CODE_UNAUTHENTICATED", model="-") == 1
    assert core_delta(core_requests, outcome="ERROR_CODE_UPSTREAM_UNAVAILABLE", model=MODEL) == 1
    assert core_delta("cursorgate_core_request_duration_seconds_count", model=MODEL) == 4
    assert core_delta("cursorgate_core_time_to_first_token_seconds_count", model=MODEL, stream="true") == 2
    # Tokens: what the caller was told, counted once each.
    assert core_delta("cursorgate_core_tokens_total", model=MODEL, direction="in") == usage_in > 0
    assert core_delta("cursorgate_core_tokens_total", model=MODEL, direction="out") == usage_out > 0
    # One failed attempt per try of the only account (3 attempts, all "unavailable").
    assert core_delta("cursorgate_core_upstream_errors_total", failure="unavailable") == 3
    # Gauges computed at scrape time: the one account is active, nothing is in flight now.
    assert value(core, "cursorgate_core_accounts", state="active") == 1
    assert value(core, "cursorgate_core_accounts", state="disabled") == 0
    assert value(core, "cursorgate_core_pool_in_flight") == 0


def test_in_flight_gauge_sees_a_running_stream(metered: tuple[Stack, int]) -> None:
    stack, core_port = metered
    core_url = f"http://127.0.0.1:{core_port}/metrics"
    body = {
        "model": MODEL,
        "stream": True,
        "messages": [{"role": "user", "content": "slow\nsim: chunks=6 delay_ms=300"}],
    }
    headers = {"authorization": f"Bearer {stack.license}"}
    with httpx.stream(
        "POST", f"{stack.base_url}/chat/completions", json=body, headers=headers, timeout=30
    ) as r:
        assert r.status_code == 200
        lines = r.iter_lines()
        assert next(line for line in lines if line.startswith("data:"))
        assert value(scrape(core_url), "cursorgate_core_pool_in_flight") == 1
        for _ in lines:
            pass
    assert value(scrape(core_url), "cursorgate_core_pool_in_flight") == 0


def test_metrics_port_zero_serves_none(tmp_path: Path) -> None:
    """CURSORGATE_METRICS_PORT=0 (what start_stack sets by default) opens no port; the facade's
    /metrics is always there."""
    stack = start_stack(tmp_path)
    try:
        assert "cursorgate_facade_requests_total" in httpx.get(f"{stack.root_url}/metrics").text
        assert "metrics server" not in stack.core.log.read_text()
    finally:
        stack.stop()
