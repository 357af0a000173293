"""Several streamed chats at once through the gateway, on every dialect: each ends (a finish_reason,
then [DONE]) and the gateway still answers afterwards.

Regression: on the bidi dialects (agent, inference) the streams share one HTTP/2 connection to
Cursor, and a client that half-closes after the server has ended its response (as Cursor's own
clients do) killed the simulator's connection: every stream on it received its text and then never
closed, and no later call progressed (see simulator/h2patches.py).
"""

from __future__ import annotations

import asyncio
import json

import httpx
import openai
import pytest

from tests.procs import Stack

pytestmark = pytest.mark.every_dialect

STREAMS = 8
# Each chat takes well under a second here; a stalled one waits for core's 60 s idle timeout.
TIMEOUT_S = 20.0


async def _chat(client: httpx.AsyncClient, n: int) -> tuple[str, list[str | None], list[str]]:
    """One streamed Chat Completion, read as raw SSE: its text, finish_reasons and data lines."""
    body = {
        "model": "gpt-5.2",
        "messages": [{"role": "user", "content": f"concurrent {n}"}],
        "stream": True,
    }
    text, reasons, data = "", [], []
    async with client.stream("POST", "/chat/completions", json=body) as response:
        assert response.status_code == 200, await response.aread()
        async for line in response.aiter_lines():
            if not line.startswith("data: "):
                continue
            data.append(line[len("data: ") :])
            if data[-1] == "[DONE]":
                continue
            for choice in json.loads(data[-1]).get("choices", []):
                text += choice["delta"].get("content") or ""
                reasons.append(choice.get("finish_reason"))
    return text, reasons, data


async def _all(stack: Stack) -> list[tuple[str, list[str | None], list[str]]]:
    headers = {"authorization": f"Bearer {stack.license}"}
    async with httpx.AsyncClient(base_url=stack.base_url, headers=headers, timeout=TIMEOUT_S) as client:
        return await asyncio.wait_for(asyncio.gather(*(_chat(client, n) for n in range(STREAMS))), TIMEOUT_S)


def test_concurrent_streams_all_end_and_the_gateway_goes_on(stack: Stack) -> None:
    for _ in range(2):  # a second wave reuses the connection the first one left behind
        results = asyncio.run(_all(stack))
        for n, (text, reasons, data) in enumerate(results):
            assert text == f"Simulated gpt-5.2 answer. You said: concurrent {n}"
            assert [r for r in reasons if r is not None] == ["stop"]
            assert data[-1] == "[DONE]"

    client = openai.OpenAI(base_url=stack.base_url, api_key=stack.license, max_retries=0, timeout=TIMEOUT_S)
    reply = client.chat.completions.create(model="gpt-5.2", messages=[{"role": "user", "content": "after"}])
    assert reply.choices[0].message.content == "Simulated gpt-5.2 answer. You said: after"
    assert reply.choices[0].finish_reason == "stop"
