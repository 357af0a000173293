"""The seam between Responses API JSON and `cursorgate.v1`: items in, a `response` object out.

Pure functions; no I/O. Conversation items (the caller's and the stored ones) become chat
messages: `instructions` a system message, `function_call` items the tool calls of an assistant
message, `function_call_output` items tool messages, `reasoning` items the reasoning of the
assistant message that follows. Outgoing objects are plain dicts, typed where it helps mypy.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from google.protobuf import struct_pb2

from cursorgate.v1 import chat_pb2
from facade.errors import OpenAIError
from facade.files import openai_file
from facade.openai_chat.convert import REASONING_EFFORTS, ROLES, TOOL_CHOICE_MODES
from facade.openai_responses.protocol import (
    CreateResponseRequest,
    FunctionCallItem,
    FunctionCallOutputItem,
    FunctionTool,
    InputImage,
    InputItem,
    InputText,
    MessageItem,
    OutputText,
    ReasoningItem,
    Refusal,
    TextFormatJSONObject,
    TextFormatJSONSchema,
    ToolChoiceObject,
)
from facade.response_format import to_response_format

log = logging.getLogger("facade.responses")

Item = dict[str, Any]


def new_id(prefix: str) -> str:
    return f"{prefix}_{os.urandom(12).hex()}"


# --- items -> ChatRequest -----------------------------------------------------------------------


def input_items(body: CreateResponseRequest) -> list[InputItem]:
    """The request's input as items (a string is one user message)."""
    if isinstance(body.input, str):
        return [MessageItem(role="user", content=body.input)]
    return list(body.input)


def _text_of(parts: list[Any], param: str) -> str:
    texts: list[str] = []
    for part in parts:
        if isinstance(part, InputText | OutputText):
            texts.append(part.text)
        elif isinstance(part, Refusal):
            texts.append(part.refusal)
        else:
            raise OpenAIError(400, "Tool outputs may hold text only.", param=param)
    return "\n".join(texts)


def _message(item: MessageItem, param: str) -> chat_pb2.Message:
    out = chat_pb2.Message(role=ROLES[item.role])
    if isinstance(item.content, str):
        out.content.add(text=item.content)
        return out
    for j, part in enumerate(item.content):
        if isinstance(part, InputText | OutputText):
            out.content.add(text=part.text)
        elif isinstance(part, Refusal):
            out.content.add(text=part.refusal)
        elif isinstance(part, InputImage):
            if not part.image_url:
                raise OpenAIError(
                    400,
                    "Images must be given as 'image_url' (a data: or http(s) URL); "
                    "file ids are not supported.",
                    param=f"{param}.content[{j}].image_url",
                )
            out.content.add(image=chat_pb2.Image(url=part.image_url, detail=part.detail or ""))
        else:
            out.content.add(
                file=openai_file(
                    f"{param}.content[{j}]",
                    file_data=part.file_data,
                    file_id=part.file_id,
                    filename=part.filename,
                    file_url=part.file_url,
                )
            )
    return out


def to_messages(items: list[InputItem], instructions: str | None) -> list[chat_pb2.Message]:
    messages: list[chat_pb2.Message] = []
    if instructions:
        system = chat_pb2.Message(role=chat_pb2.ROLE_SYSTEM)
        system.content.add(text=instructions)
        messages.append(system)
    reasoning: list[str] = []  # waits for the assistant message it belongs to
    for i, item in enumerate(items):
        param = f"input[{i}]"
        if isinstance(item, MessageItem):
            message = _message(item, param)
            if message.role == chat_pb2.ROLE_ASSISTANT and reasoning:
                message.reasoning, reasoning = "\n".join(reasoning), []
            messages.append(message)
        elif isinstance(item, FunctionCallItem):
            last = messages[-1] if messages else None
            if last is None or last.role != chat_pb2.ROLE_ASSISTANT:
                last = chat_pb2.Message(role=chat_pb2.ROLE_ASSISTANT)
                messages.append(last)
            if reasoning:
                last.reasoning, reasoning = "\n".join(reasoning), []
            last.tool_calls.add(id=item.call_id, name=item.name, arguments=item.arguments)
        elif isinstance(item, FunctionCallOutputItem):
            tool = chat_pb2.Message(role=chat_pb2.ROLE_TOOL, tool_call_id=item.call_id)
            output = item.output if isinstance(item.output, str) else _text_of(item.output, f"{param}.output")
            tool.content.add(text=output)
            messages.append(tool)
        elif isinstance(item, ReasoningItem):
            text = "\n".join(s.text for s in item.summary if s.text)
            if text:
                reasoning.append(text)
        else:
            log.debug("skipping input item of type %r: the gateway cannot use it", item.type)
    return messages


def _tools(body: CreateResponseRequest) -> list[FunctionTool]:
    tools: list[FunctionTool] = []
    for tool in body.tools or ():
        if isinstance(tool, FunctionTool):
            tools.append(tool)
        else:
            log.debug("dropping built-in tool of type %r: the gateway cannot run it", tool.type)
    return tools


def to_chat_request(
    body: CreateResponseRequest, items: list[InputItem], request_id: str
) -> chat_pb2.ChatRequest:
    request = chat_pb2.ChatRequest(
        model=body.model,
        request_id=request_id,
        user=body.user or "",
        affinity_key=body.prompt_cache_key or body.user or "",
    )
    request.messages.extend(to_messages(items, body.instructions))
    if not request.messages:
        # Core would refuse it naming `messages`, a field this API does not have.
        raise OpenAIError(400, "'input' must contain at least one item.", param="input")
    names: set[str] = set()
    for tool in _tools(body):
        out = request.tools.add(name=tool.name, description=tool.description or "", strict=bool(tool.strict))
        names.add(tool.name)
        if tool.parameters is not None:
            parameters = struct_pb2.Struct()
            parameters.update(tool.parameters)
            out.parameters.CopyFrom(parameters)
    choice = body.tool_choice
    if isinstance(choice, str):
        # "required"/"none" with only built-in tools left means nothing to require or forbid.
        request.tool_choice.mode = TOOL_CHOICE_MODES[choice] if names else chat_pb2.ToolChoice.MODE_AUTO
    elif choice is not None and choice.type == "function" and choice.name:
        request.tool_choice.mode = chat_pb2.ToolChoice.MODE_FUNCTION
        request.tool_choice.function_name = choice.name
    elif choice is not None:
        log.debug("tool_choice of type %r treated as auto", choice.type)
    if body.parallel_tool_calls is not None:
        request.parallel_tool_calls = body.parallel_tool_calls
    if body.reasoning is not None and body.reasoning.effort is not None:
        request.reasoning_effort = REASONING_EFFORTS[body.reasoning.effort]
    fmt = body.text.format if body.text is not None else None
    if isinstance(fmt, TextFormatJSONSchema):
        request.response_format.CopyFrom(
            to_response_format(
                "json_schema",
                name=fmt.name,
                description=fmt.description,
                schema=fmt.schema_,
                strict=fmt.strict,
            )
        )
    elif isinstance(fmt, TextFormatJSONObject):
        request.response_format.CopyFrom(to_response_format("json_object"))
    sampling = request.sampling
    if body.temperature is not None:
        sampling.temperature = body.temperature
    if body.top_p is not None:
        sampling.top_p = body.top_p
    if body.max_output_tokens is not None:
        sampling.max_tokens = body.max_output_tokens
    return request


def dump_items(items: list[InputItem]) -> list[Item]:
    return [item.model_dump(mode="json", by_alias=True, exclude_none=True) for item in items]


# --- the response object --------------------------------------------------------------------------


def usage_object(usage: chat_pb2.Usage) -> dict[str, Any]:
    return {
        "input_tokens": usage.prompt_tokens,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": usage.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
        "total_tokens": usage.total_tokens or usage.prompt_tokens + usage.completion_tokens,
    }


def message_item(item_id: str, text: str, status: str = "completed") -> Item:
    content = [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}] if text else []
    return {"id": item_id, "type": "message", "status": status, "role": "assistant", "content": content}


def reasoning_item(item_id: str, text: str) -> Item:
    summary = [{"type": "summary_text", "text": text}] if text else []
    return {"id": item_id, "type": "reasoning", "summary": summary}


def function_call_item(
    item_id: str, call_id: str, name: str, arguments: str, status: str = "completed"
) -> Item:
    return {
        "id": item_id,
        "type": "function_call",
        "status": status,
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
    }


def output_items(answer: chat_pb2.ChatResponse) -> list[Item]:
    """The output of an aggregated answer: reasoning, then text, then the tool calls."""
    output: list[Item] = []
    if answer.reasoning:
        output.append(reasoning_item(new_id("rs"), answer.reasoning))
    if answer.content:
        output.append(message_item(new_id("msg"), answer.content))
    for call in answer.tool_calls:
        output.append(function_call_item(new_id("fc"), call.id, call.name, call.arguments))
    return output


def _text_format(body: CreateResponseRequest) -> dict[str, Any]:
    fmt = body.text.format if body.text is not None else None
    if fmt is None:
        return {"type": "text"}
    return fmt.model_dump(mode="json", by_alias=True, exclude_none=True)


def response_object(
    body: CreateResponseRequest,
    *,
    response_id: str,
    created_at: int,
    status: str,
    output: list[Item],
    usage: chat_pb2.Usage | None = None,
    error: dict[str, Any] | None = None,
    incomplete_reason: str | None = None,
) -> dict[str, Any]:
    choice = body.tool_choice
    reasoning = body.reasoning
    return {
        "id": response_id,
        "object": "response",
        "created_at": created_at,
        "status": status,
        "background": False,
        "error": error,
        "incomplete_details": {"reason": incomplete_reason} if incomplete_reason else None,
        "instructions": body.instructions,
        "max_output_tokens": body.max_output_tokens,
        "max_tool_calls": None,
        "model": body.model,
        "output": output,
        "parallel_tool_calls": True if body.parallel_tool_calls is None else body.parallel_tool_calls,
        "previous_response_id": body.previous_response_id,
        "prompt_cache_key": body.prompt_cache_key,
        "reasoning": {
            "effort": reasoning.effort if reasoning else None,
            "summary": (reasoning.summary or reasoning.generate_summary) if reasoning else None,
        },
        "service_tier": "default",
        "store": body.stores,
        "temperature": 1.0 if body.temperature is None else body.temperature,
        "text": {"format": _text_format(body), "verbosity": "medium"},
        "tool_choice": choice.model_dump() if isinstance(choice, ToolChoiceObject) else choice or "auto",
        "tools": [t.model_dump(mode="json", exclude_none=True) for t in _tools(body)],
        "top_p": 1.0 if body.top_p is None else body.top_p,
        "truncation": body.truncation or "disabled",
        "usage": usage_object(usage) if usage is not None else None,
        "user": body.user,
        "metadata": body.metadata or {},
    }


# A finish that is not a normal end makes the response "incomplete", as OpenAI reports it.
INCOMPLETE: dict[int, str] = {
    chat_pb2.FINISH_REASON_LENGTH: "max_output_tokens",
    chat_pb2.FINISH_REASON_CONTENT_FILTER: "content_filter",
}


# `response.error.code` is a closed set in OpenAI's API (typed clients may refuse others): ours map
# onto it; the message keeps the detail.
RATE_LIMIT_CODES = frozenset({"rate_limit_exceeded", "insufficient_quota"})


def error_object(failure: OpenAIError) -> dict[str, Any]:
    code = "rate_limit_exceeded" if failure.code in RATE_LIMIT_CODES else "server_error"
    return {"code": code, "message": failure.message, "type": failure.type, "param": failure.param}
