"""The Vercel AI SDK's Anthropic provider (`@ai-sdk/anthropic`, pinned) through the gateway's
/v1/messages: generateText, streamText, and a tool call round trip, against the simulator.

Installed with npm on first use (tests/node.py); skipped, visibly, without npm or a registry."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.node import npm_project, run_node
from tests.procs import Stack

# The provider major that speaks the ai@6 provider spec (v3), pinned so a release cannot change
# what this test drives.
AI_SDK_ANTHROPIC = "@ai-sdk/anthropic@3.0.140"

SCRIPT = """
import { createAnthropic } from "@ai-sdk/anthropic";
import { generateText, streamText, tool, stepCountIs } from "ai";
import { z } from "zod";
// The provider appends /messages to its baseURL and sends the key as x-api-key.
const anthropic = createAnthropic({ baseURL: process.env.BASE_URL, apiKey: process.env.API_KEY });
const model = anthropic("claude-4.5-sonnet");
const out = {};
const plain = await generateText({ model, prompt: "hello from ai-sdk anthropic" });
out.plain = plain.text;
out.plainFinish = plain.finishReason;
const streamed = streamText({ model, prompt: "sim: text=anthropic_stream" });
out.stream = "";
for await (const delta of streamed.textStream) out.stream += delta;
out.streamFinish = await streamed.finishReason;
const weather = tool({
  description: "Get the weather", inputSchema: z.object({ location: z.string() }),
  execute: async ({ location }) => `19 degrees in ${location}`,
});
const calls = [];
const withTools = streamText({
  model, prompt: "Use get_current_weather for Bergen",
  tools: { get_current_weather: weather }, stopWhen: stepCountIs(3),
  onStepFinish: (step) => {
    for (const c of step.toolCalls) calls.push({ name: c.toolName, input: c.input });
  },
});
out.tools = "";
for await (const delta of withTools.textStream) out.tools += delta;
out.calls = calls;
out.steps = (await withTools.steps).length;
const generatedWithTools = await generateText({
  model, prompt: "Use get_current_weather for Tromso",
  tools: { get_current_weather: weather }, stopWhen: stepCountIs(3),
});
out.generatedTools = generatedWithTools.text;
console.log(JSON.stringify(out));
"""


@pytest.fixture(scope="module")
def node_ai_sdk_anthropic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return npm_project(tmp_path_factory, "ai@^6", AI_SDK_ANTHROPIC, "zod@^4")


def test_ai_sdk_anthropic_provider(stack: Stack, node_ai_sdk_anthropic: Path) -> None:
    result = run_node(stack, node_ai_sdk_anthropic, SCRIPT)
    assert result["plain"] == "Simulated claude-4.5-sonnet answer. You said: hello from ai-sdk anthropic"
    assert result["plainFinish"] == "stop"
    assert result["stream"] == "anthropic stream"
    assert result["streamFinish"] == "stop"
    # Step 1: the simulator calls the tool with every required property ("sim-location"); step 2:
    # it echoes the result the SDK sent back through tool_result.
    assert result["calls"] == [{"name": "get_current_weather", "input": {"location": "sim-location"}}]
    assert result["steps"] == 2
    assert result["tools"] == "The tools answered: get_current_weather -> 19 degrees in sim-location"
    assert result["generatedTools"] == "The tools answered: get_current_weather -> 19 degrees in sim-location"
