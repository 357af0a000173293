"""OpenAI chat-completions (and legacy completions) protocol models (request side), kept apart
from serving logic.

Unknown fields are ignored, as OpenAI-compatible servers commonly do, so newer SDKs keep
working; values of known fields must have the right JSON type (strict: no "1" for 1).
Responses are plain dicts serialized with orjson (see `convert.py`): building pydantic
models for every streamed chunk would cost more than the translation itself.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

INT32_MAX = 2**31 - 1
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
# Tool schemas travel to core as a protobuf Struct (three message levels per JSON object level):
# deeper ones would exceed protobuf's nesting limit of 100, and real schemas stay far below this.
MAX_SCHEMA_DEPTH = 24

ReasoningEffort = Literal["none", "minimal", "low", "medium", "high", "xhigh"]
# "function": the deprecated function-calling API's result message.
Role = Literal["system", "developer", "user", "assistant", "tool", "function"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)


class ImageURL(_Model):
    # A data: URL or an http(s) URL; core decodes or fetches it.
    url: str
    detail: Literal["auto", "low", "high"] | None = None


class TextPart(_Model):
    type: Literal["text"]
    text: str


class ImagePart(_Model):
    type: Literal["image_url"]
    image_url: ImageURL


class FileObject(_Model):
    # A base64 data: URL (bare base64 is accepted too); `file_id` (OpenAI's Files API) has no
    # counterpart here and is refused by name.
    file_data: str | None = None
    file_id: str | None = None
    filename: str | None = None


class FilePart(_Model):
    type: Literal["file"]
    file: FileObject


ContentPart = Annotated[TextPart | ImagePart | FilePart, Field(discriminator="type")]


class FunctionCall(_Model):
    name: str
    # JSON text, as OpenAI sends it.
    arguments: str = ""


class ToolCall(_Model):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(_Model):
    """One message of any role; role-specific fields are optional and core checks them."""

    role: Role
    # None is allowed for assistant messages that only carry tool calls.
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    reasoning_content: str | None = None
    # The deprecated function-calling API's assistant call.
    function_call: FunctionCall | None = None


def check_json_value(value: Any, depth: int = 1) -> None:
    """Refuses what a protobuf Struct cannot carry: non-finite or out-of-range numbers, strings
    that are not valid Unicode (unpaired surrogates, which JSON escapes can spell), deep nesting."""
    if depth > MAX_SCHEMA_DEPTH:
        raise ValueError(f"nested deeper than {MAX_SCHEMA_DEPTH} levels")
    if isinstance(value, dict):
        for key, item in value.items():
            check_json_value(key, depth)
            check_json_value(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            check_json_value(item, depth + 1)
    elif isinstance(value, str):
        try:
            value.encode()
        except UnicodeEncodeError:
            raise ValueError("strings must be valid Unicode (no unpaired surrogates)") from None
    elif isinstance(value, int | float) and not isinstance(value, bool):
        try:
            finite = math.isfinite(value)
        except OverflowError:  # an int beyond the range of a double
            finite = False
        if not finite:
            raise ValueError("numbers must be finite and within the range of a double")


def _json_object(value: dict[str, Any]) -> dict[str, Any]:
    check_json_value(value)
    return value


# A JSON object the gateway passes on as a protobuf Struct (tool parameters, schemas, inputs).
JsonObject = Annotated[dict[str, Any], AfterValidator(_json_object)]


class FunctionDefinition(_Model):
    name: str
    description: str | None = None
    # JSON Schema of the arguments object.
    parameters: JsonObject | None = None
    strict: bool | None = None


class ToolDefinition(_Model):
    type: Literal["function"] = "function"
    function: FunctionDefinition


class NamedFunction(_Model):
    name: str


class NamedToolChoice(_Model):
    type: Literal["function"] = "function"
    function: NamedFunction


class StreamOptions(_Model):
    include_usage: bool | None = None


class JSONSchemaSpec(_Model):
    name: str
    description: str | None = None
    # `schema` would shadow a pydantic BaseModel attribute, hence the alias.
    schema_: JsonObject | None = Field(default=None, alias="schema")
    strict: bool | None = None


class ResponseFormat(_Model):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JSONSchemaSpec | None = None

    @model_validator(mode="after")
    def _schema_given(self) -> ResponseFormat:
        if self.type == "json_schema" and self.json_schema is None:
            raise ValueError("'json_schema' is required when type is 'json_schema'")
        return self


class ChatCompletionRequest(_Model):
    """The body of `POST /v1/chat/completions`."""

    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    tools: list[ToolDefinition] | None = None
    tool_choice: Literal["auto", "none", "required"] | NamedToolChoice | None = None
    # The deprecated spellings of tools/tool_choice; used when `tools` is absent.
    functions: list[FunctionDefinition] | None = None
    function_call: Literal["auto", "none"] | NamedFunction | None = None
    parallel_tool_calls: bool | None = None
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    max_tokens: int | None = Field(default=None, ge=1, le=INT32_MAX)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=INT32_MAX)
    stop: str | list[str] | None = None
    seed: int | None = Field(default=None, ge=INT64_MIN, le=INT64_MAX)
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    reasoning_effort: ReasoningEffort | None = None
    user: str | None = None
    # Routes the conversation to one account (core's CURSORGATE_POOL_AFFINITY); else `user`.
    prompt_cache_key: str | None = None
    n: int | None = Field(default=None, ge=1)
    # Extension: Cursor's Max mode (also asked for with a "-max" suffix on `model`).
    max_mode: bool | None = None
    # Conveyed to core, which instructs the model and, under `strict`, validates (core/chat/structured.py).
    response_format: ResponseFormat | None = None

    @field_validator("n")
    @classmethod
    def _single_choice(cls, value: int | None) -> int | None:
        if value is not None and value > 1:
            raise ValueError("only n=1 is supported")
        return value

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)

    @property
    def legacy_functions(self) -> bool:
        """The caller speaks the deprecated function-calling API: answer in its shape."""
        return self.functions is not None and self.tools is None


class CompletionRequest(_Model):
    """The body of `POST /v1/completions`."""

    model: str
    prompt: str | list[str]
    max_tokens: int | None = Field(default=None, ge=1, le=INT32_MAX)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    stop: str | list[str] | None = None
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    seed: int | None = Field(default=None, ge=INT64_MIN, le=INT64_MAX)
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    user: str | None = None
    n: int | None = Field(default=None, ge=1, le=1)
    best_of: int | None = Field(default=None, ge=1, le=1)
    echo: bool | None = None
    suffix: str | None = None
    logprobs: int | None = None

    @field_validator("prompt")
    @classmethod
    def _one_prompt(cls, value: str | list[str]) -> str | list[str]:
        if isinstance(value, list) and len(value) != 1:
            raise ValueError("exactly one prompt is supported")
        return value

    @field_validator("suffix", "logprobs")
    @classmethod
    def _unsupported(cls, value: object) -> object:
        if value is not None:
            raise ValueError("not supported: Cursor's chat API has no such option")
        return value

    @property
    def text(self) -> str:
        return self.prompt if isinstance(self.prompt, str) else self.prompt[0]
