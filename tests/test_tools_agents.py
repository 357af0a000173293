"""Agent frameworks unchanged but for base_url: langchain-openai and openai-agents."""

from __future__ import annotations

from typing import Any

import openai
import pytest
from agents import Agent, OpenAIChatCompletionsModel, Runner, function_tool, set_tracing_disabled
from langchain_core.messages import HumanMessage, ToolMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from pydantic import SecretStr

from tests.procs import Stack

pytestmark = pytest.mark.every_dialect


@tool
def get_current_weather(location: str, unit: str = "celsius") -> str:
    """Get the current weather in a given location."""
    return f"It is 21 {unit} in {location}"


def test_langchain_bind_tools_round_trip(stack: Stack) -> None:
    llm = ChatOpenAI(
        model="gpt-5.2", base_url=stack.base_url, api_key=SecretStr(stack.license), max_retries=0
    )
    bound = llm.bind_tools([get_current_weather])
    question = HumanMessage("Use get_current_weather for Lisbon")
    ai = bound.invoke([question])
    assert ai.tool_calls and ai.tool_calls[0]["name"] == "get_current_weather"
    call = ai.tool_calls[0]
    assert "location" in call["args"]
    result = get_current_weather.invoke(call["args"])
    final = bound.invoke([question, ai, ToolMessage(result, tool_call_id=call["id"])])
    assert result in str(final.content)


def test_langchain_streaming_tool_call(stack: Stack) -> None:
    llm = ChatOpenAI(
        model="gpt-5.2", base_url=stack.base_url, api_key=SecretStr(stack.license), max_retries=0
    )
    bound = llm.bind_tools([get_current_weather])
    gathered: Any = None
    for chunk in bound.stream("Use get_current_weather for Oslo"):
        gathered = chunk if gathered is None else gathered + chunk
    assert gathered is not None
    calls = gathered.tool_calls
    assert calls and calls[0]["name"] == "get_current_weather" and calls[0]["args"]["location"]


@function_tool
def lookup_order(order_id: str) -> str:
    """Look up the status of an order by its id."""
    return f"order {order_id} shipped yesterday"


@pytest.mark.asyncio
async def test_openai_agents_runs_to_completion(stack: Stack) -> None:
    set_tracing_disabled(True)
    client = openai.AsyncOpenAI(base_url=stack.base_url, api_key=stack.license, max_retries=0)
    agent = Agent(
        name="support",
        instructions="You answer order questions using the tools.",
        tools=[lookup_order],
        model=OpenAIChatCompletionsModel(model="claude-4.5-sonnet", openai_client=client),
    )
    result = await Runner.run(agent, "Please lookup_order for my order", max_turns=4)
    assert "shipped yesterday" in str(result.final_output)
