"""OpenAI Responses API protocol models (request side and stored items), apart from serving logic.

Unknown fields are accepted and logged at DEBUG (newer SDKs and agents send more than a gateway
can use: Codex's `prompt_cache_key`, `include`, ...); known fields must have the right JSON type.
Input items are told apart by `type` (a message may omit it); items of types the gateway cannot
use (built-in tool calls, item references) are kept as `OtherItem` and skipped when converting.
Outgoing objects are plain dicts (see `convert.py` and `stream.py`).
"""

from __future__ import annotations

import logging
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    TypeAdapter,
    field_validator,
    model_validator,
)

from facade.openai_chat.schemas import INT32_MAX, JsonObject, ReasoningEffort

log = logging.getLogger("facade.responses")

MAX_METADATA_KEYS = 16


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    @model_validator(mode="after")
    def _log_unknown(self) -> Any:
        if self.model_extra:
            log.debug("ignoring %s fields: %s", type(self).__name__, ", ".join(sorted(self.model_extra)))
        return self


# --- content parts ------------------------------------------------------------------------------


class InputText(_Model):
    type: Literal["input_text"]
    text: str


class InputImage(_Model):
    type: Literal["input_image"]
    # A data: URL or an http(s) URL; `file_id` (OpenAI's Files API) has no counterpart here.
    image_url: str | None = None
    file_id: str | None = None
    detail: Literal["auto", "low", "high"] | None = None


class InputFile(_Model):
    """`file_data` (a base64 data: URL) or `file_url` (http(s), fetched by core); `file_id` is
    refused by name (no Files API here)."""

    type: Literal["input_file"]
    file_id: str | None = None
    file_data: str | None = None
    file_url: str | None = None
    filename: str | None = None


class OutputText(_Model):
    type: Literal["output_text"]
    text: str
    annotations: list[Any] | None = None


class Refusal(_Model):
    type: Literal["refusal"]
    refusal: str


ContentPart = Annotated[
    InputText | InputImage | InputFile | OutputText | Refusal, Field(discriminator="type")
]


# --- input items ---------------------------------------------------------------------------------


class MessageItem(_Model):
    type: Literal["message"] = "message"
    role: Literal["user", "assistant", "system", "developer"]
    content: str | list[ContentPart]
    id: str | None = None
    status: str | None = None


class FunctionCallItem(_Model):
    type: Literal["function_call"]
    call_id: str
    name: str
    # JSON text, as the model produced it.
    arguments: str = ""
    id: str | None = None
    status: str | None = None


class FunctionCallOutputItem(_Model):
    type: Literal["function_call_output"]
    call_id: str
    # Text, or content parts (their text is what the model is shown).
    output: str | list[ContentPart]
    id: str | None = None
    status: str | None = None


class SummaryText(_Model):
    type: Literal["summary_text"]
    text: str


class ReasoningItem(_Model):
    """Reasoning the model produced, sent back; `encrypted_content` is accepted and not used."""

    type: Literal["reasoning"]
    summary: list[SummaryText] = Field(default_factory=list)
    content: list[Any] | None = None
    encrypted_content: str | None = None
    id: str | None = None
    status: str | None = None


class OtherItem(_Model):
    """An item the gateway cannot use (built-in tool calls and outputs, item references)."""

    type: str


def _item_kind(value: Any) -> str:
    kind = value.get("type", "message") if isinstance(value, dict) else getattr(value, "type", "message")
    return kind if kind in ("message", "function_call", "function_call_output", "reasoning") else "other"


InputItem = Annotated[
    Annotated[MessageItem, Tag("message")]
    | Annotated[FunctionCallItem, Tag("function_call")]
    | Annotated[FunctionCallOutputItem, Tag("function_call_output")]
    | Annotated[ReasoningItem, Tag("reasoning")]
    | Annotated[OtherItem, Tag("other")],
    Discriminator(_item_kind),
]

ITEMS = TypeAdapter(list[InputItem])


# --- tools, formats, reasoning ----------------------------------------------------------------------


class FunctionTool(_Model):
    type: Literal["function"]
    name: str
    description: str | None = None
    parameters: JsonObject | None = None
    strict: bool | None = None


class HostedTool(_Model):
    """A built-in tool (`local_shell`, `custom`, `web_search`, ...): the gateway cannot run it."""

    type: str


def _tool_kind(value: Any) -> str:
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return "function" if kind == "function" else "hosted"


Tool = Annotated[
    Annotated[FunctionTool, Tag("function")] | Annotated[HostedTool, Tag("hosted")],
    Discriminator(_tool_kind),
]


class ToolChoiceObject(_Model):
    # "function" names a tool; other types (hosted tools, allowed_tools) are treated as "auto".
    type: str
    name: str | None = None


class TextFormatText(_Model):
    type: Literal["text"]


class TextFormatJSONObject(_Model):
    type: Literal["json_object"]


class TextFormatJSONSchema(_Model):
    type: Literal["json_schema"]
    name: str
    # `schema` would shadow a pydantic BaseModel attribute, hence the alias.
    schema_: JsonObject = Field(alias="schema")
    description: str | None = None
    strict: bool | None = None


TextFormat = Annotated[
    TextFormatText | TextFormatJSONObject | TextFormatJSONSchema, Field(discriminator="type")
]


class TextConfig(_Model):
    format: TextFormat | None = None
    verbosity: Literal["low", "medium", "high"] | None = None


class ReasoningConfig(_Model):
    effort: ReasoningEffort | None = None
    summary: Literal["auto", "concise", "detailed"] | None = None
    generate_summary: Literal["auto", "concise", "detailed"] | None = None


# --- the request --------------------------------------------------------------------------------------


class CreateResponseRequest(_Model):
    """The body of `POST /v1/responses`."""

    model: str
    input: str | list[InputItem]
    instructions: str | None = None
    previous_response_id: str | None = None
    # OpenAI's default: stored (for GET and previous_response_id) unless told otherwise.
    store: bool | None = None
    stream: bool | None = False
    tools: list[Tool] | None = None
    tool_choice: Literal["auto", "none", "required"] | ToolChoiceObject | None = None
    parallel_tool_calls: bool | None = None
    reasoning: ReasoningConfig | None = None
    text: TextConfig | None = None
    max_output_tokens: int | None = Field(default=None, ge=1, le=INT32_MAX)
    metadata: dict[str, str] | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    user: str | None = None
    prompt_cache_key: str | None = None
    include: list[str] | None = None
    # Accepted so that SDK defaults do not fail; a gateway has no background mode.
    background: bool | None = None
    truncation: Literal["auto", "disabled"] | None = None

    @field_validator("metadata")
    @classmethod
    def _metadata_bounded(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        if value is not None and len(value) > MAX_METADATA_KEYS:
            raise ValueError(f"at most {MAX_METADATA_KEYS} keys are allowed")
        return value

    @field_validator("background")
    @classmethod
    def _no_background(cls, value: bool | None) -> bool | None:
        if value:
            raise ValueError("background responses are not supported by this gateway")
        return value

    @property
    def stores(self) -> bool:
        return self.store is not False
