"""The spine end to end: openai SDK -> facade -> core -> Cursor simulator, all real processes."""

from __future__ import annotations

import httpx
import openai
import pytest

from tests.procs import Stack

pytestmark = pytest.mark.every_dialect


@pytest.fixture
def client(stack: Stack) -> openai.OpenAI:
    return openai.OpenAI(base_url=stack.base_url, api_key=stack.license, max_retries=0)


def test_non_stream_completion_contains_prompt(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model="claude-4.5-sonnet", messages=[{"role": "user", "content": "What is 2+2? marker-7f3a"}]
    )
    choice = reply.choices[0]
    assert reply.object == "chat.completion"
    assert reply.id.startswith("chatcmpl-")
    assert reply.model == "claude-4.5-sonnet"
    assert "What is 2+2? marker-7f3a" in (choice.message.content or "")
    assert choice.message.role == "assistant"
    assert choice.finish_reason == "stop"
    assert reply.usage is not None
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens > 0


def test_stream_has_several_chunks_and_stop(client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model="gpt-5.2",
            # Paced: frames that reach a busy gateway together may leave as one (coalescing), so
            # "several chunks" is about frames that Cursor sends apart.
            messages=[{"role": "user", "content": "stream me marker-91bc\nsim: chunks=5 delay_ms=150"}],
            stream=True,
        )
    )
    text_chunks = [c for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(text_chunks) >= 3
    assert "stream me marker-91bc" in "".join(c.choices[0].delta.content or "" for c in text_chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert all(c.usage is None for c in chunks)
    assert len({c.id for c in chunks}) == 1


def test_stream_include_usage_adds_final_usage_chunk(client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model="gpt-5.2",
            messages=[{"role": "user", "content": "count my tokens"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None and last.usage.completion_tokens > 0
    assert chunks[-2].choices[0].finish_reason == "stop"


def test_raw_sse_ends_with_done(stack: Stack) -> None:
    body = {"model": "gpt-5.2", "messages": [{"role": "user", "content": "raw"}], "stream": True}
    headers = {"Authorization": f"Bearer {stack.license}"}
    with httpx.stream("POST", f"{stack.base_url}/chat/completions", json=body, headers=headers) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in response.iter_lines() if line]
    assert all(line.startswith("data: ") for line in lines)
    assert lines[-1] == "data: [DONE]"


def test_thinking_model_streams_reasoning_apart(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model="claude-4.5-sonnet-thinking", messages=[{"role": "user", "content": "think about it"}]
    )
    message = reply.choices[0].message
    reasoning = getattr(message, "reasoning_content", None) or (message.model_extra or {}).get(
        "reasoning_content"
    )
    assert reasoning and "think about it" in reasoning
    assert "Considering" not in (message.content or "")


# The model ids the gateway promises out of the box (shared/research/models.md), written out here
# rather than read from core.chat.catalog.SEED_MODELS: an id dropped from the catalog fails this test.
PROMISED_MODELS = [
    "composer-1",
    "claude-4.5-opus-high",
    "claude-4.5-opus-high-thinking",
    "claude-4.5-sonnet",
    "claude-4.5-sonnet-thinking",
    "gpt-5.2-codex",
    "gpt-5.2-codex-high",
    "gpt-5.2-codex-low",
    "gpt-5.2-codex-xhigh",
    "gpt-5.2-codex-fast",
    "gpt-5.2-codex-high-fast",
    "gpt-5.2-codex-low-fast",
    "gpt-5.2-codex-xhigh-fast",
    "gpt-5.1-codex-max",
    "gpt-5.1-codex-max-high",
    "gpt-5.1-codex-max-low",
    "gpt-5.1-codex-max-xhigh",
    "gpt-5.1-codex-max-medium-fast",
    "gpt-5.1-codex-max-high-fast",
    "gpt-5.1-codex-max-low-fast",
    "gpt-5.1-codex-max-xhigh-fast",
    "gpt-5.2",
    "gpt-5.2-fast",
    "gpt-5.2-high",
    "gpt-5.2-high-fast",
    "gpt-5.2-xhigh",
    "gpt-5.2-xhigh-fast",
    "gpt-5.2-low",
    "gpt-5.2-low-fast",
    "gpt-5.1-high",
    "gemini-3-pro",
    "gemini-3-flash",
    "gpt-5.1-codex-mini",
    "gpt-5.1-codex-mini-high",
    "gpt-5.1-codex-mini-low",
    "claude-4.5-haiku",
    "claude-4.5-haiku-thinking",
    "grok-code-fast-1",
    "claude-4-sonnet",
    "claude-4-sonnet-thinking",
    "claude-4-sonnet-1m",
    "claude-4-sonnet-1m-thinking",
    "gpt-5-mini",
    "gemini-2.5-flash",
    "kimi-k2-instruct",
]


def test_models_list_has_every_promised_model(client: openai.OpenAI) -> None:
    assert len(PROMISED_MODELS) == 45
    ids = {m.id for m in client.models.list().data}
    assert set(PROMISED_MODELS) <= ids


def test_v1_prefix_serves_too(stack: Stack) -> None:
    client = openai.OpenAI(base_url=f"{stack.root_url}/v1", api_key=stack.license, max_retries=0)
    reply = client.chat.completions.create(
        model="gpt-5-mini", messages=[{"role": "user", "content": "hi v1"}]
    )
    assert "hi v1" in (reply.choices[0].message.content or "")
    assert "gpt-5-mini" in {m.id for m in client.models.list().data}


@pytest.mark.parametrize("stream", [False, True])
def test_wrong_license_is_401(stack: Stack, stream: bool) -> None:
    client = openai.OpenAI(base_url=stack.base_url, api_key="sk-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as info:
        client.chat.completions.create(
            model="gpt-5.2", messages=[{"role": "user", "content": "x"}], stream=stream
        )
    assert info.value.status_code == 401
    error = info.value.body
    assert isinstance(error, dict) and set(error) >= {"message", "type", "param", "code"}


def test_missing_license_is_401(stack: Stack) -> None:
    response = httpx.post(
        f"{stack.base_url}/chat/completions",
        json={"model": "gpt-5.2", "messages": [{"role": "user", "content": "x"}]},
    )
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"


def test_empty_messages_is_400_with_param(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="gpt-5.2", messages=[])
    assert info.value.status_code == 400
    assert isinstance(info.value.body, dict) and info.value.body["param"] == "messages"


def test_unknown_model_is_404(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
    assert isinstance(info.value.body, dict) and info.value.body["param"] == "model"


def test_license_and_token_never_logged(stack: Stack, client: openai.OpenAI) -> None:
    client.chat.completions.create(model="gpt-5.2", messages=[{"role": "user", "content": "log check"}])
    logs = stack.logs()
    assert stack.token not in logs
    assert stack.license not in logs
