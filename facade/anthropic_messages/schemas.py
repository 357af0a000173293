"""Anthropic Messages protocol models (request side): `POST /v1/messages` and its count_tokens.

Unknown fields (new betas, `cache_control`, `context_management`, ...) are accepted, since
clients such as Claude Code send many, and logged at DEBUG so an operator can see what was
dropped. Values of known fields must have the right JSON type (strict: no "1" for 1).
"""

from __future__ import annotations

import logging
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from facade.openai_chat.schemas import INT32_MAX, JsonObject

logger = logging.getLogger("facade.anthropic")


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    @model_validator(mode="after")
    def _log_unknown(self) -> _Model:
        if self.model_extra and logger.isEnabledFor(logging.DEBUG):
            logger.debug("ignored fields of %s: %s", type(self).__name__, sorted(self.model_extra))
        return self


class Base64Source(_Model):
    type: Literal["base64"]
    media_type: str
    data: str


class URLSource(_Model):
    type: Literal["url"]
    url: str


class TextBlock(_Model):
    type: Literal["text"]
    text: str


class ImageBlock(_Model):
    type: Literal["image"]
    source: Annotated[Base64Source | URLSource, Field(discriminator="type")]


class TextSource(_Model):
    type: Literal["text"]
    media_type: str = "text/plain"
    data: str


class ContentSource(_Model):
    type: Literal["content"]
    content: str | list[Annotated[TextBlock | ImageBlock, Field(discriminator="type")]]


class FileSource(_Model):
    """Anthropic's Files API; refused by name (no Files API here)."""

    type: Literal["file"]
    file_id: str


class DocumentBlock(_Model):
    type: Literal["document"]
    source: Annotated[
        Base64Source | TextSource | URLSource | ContentSource | FileSource, Field(discriminator="type")
    ]
    # Shown to the model as the document's name.
    title: str | None = None
    context: str | None = None


class ToolUseBlock(_Model):
    type: Literal["tool_use"]
    id: str
    name: str
    input: JsonObject = Field(default_factory=dict)


ToolResultPart = Annotated[TextBlock | ImageBlock | DocumentBlock, Field(discriminator="type")]


class ToolResultBlock(_Model):
    type: Literal["tool_result"]
    tool_use_id: str
    content: str | list[ToolResultPart] | None = None
    is_error: bool | None = None


class ThinkingBlock(_Model):
    type: Literal["thinking"]
    thinking: str
    signature: str | None = None


class RedactedThinkingBlock(_Model):
    type: Literal["redacted_thinking"]
    data: str


ContentBlock = Annotated[
    TextBlock
    | ImageBlock
    | DocumentBlock
    | ToolUseBlock
    | ToolResultBlock
    | ThinkingBlock
    | RedactedThinkingBlock,
    Field(discriminator="type"),
]


class Message(_Model):
    # "system" mid-conversation: Claude Code's beta mid-conversation-system-2026-04-07.
    role: Literal["user", "assistant", "system"]
    content: str | list[ContentBlock]


class Tool(_Model):
    """A client tool. Server tools (`type` such as "web_search_20250305") have no
    input_schema; the gateway cannot run them, so convert.py leaves them out."""

    name: str
    type: str | None = None
    description: str | None = None
    input_schema: JsonObject | None = None


class ToolChoice(_Model):
    type: Literal["auto", "any", "tool", "none"]
    name: str | None = None
    disable_parallel_tool_use: bool | None = None

    @model_validator(mode="after")
    def _named(self) -> ToolChoice:
        if self.type == "tool" and not self.name:
            raise ValueError("tool_choice of type 'tool' needs a 'name'")
        return self


class Thinking(_Model):
    type: Literal["enabled", "disabled", "adaptive"]
    budget_tokens: int | None = Field(default=None, ge=0, le=INT32_MAX)


class OutputConfig(_Model):
    effort: Literal["low", "medium", "high", "max"] | None = None


class Metadata(_Model):
    user_id: str | None = None


class CountTokensRequest(_Model):
    """The body of `POST /v1/messages/count_tokens`: a message request without sampling."""

    model: str
    messages: list[Message] = Field(min_length=1)
    system: str | list[TextBlock] | None = None
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None
    thinking: Thinking | None = None
    output_config: OutputConfig | None = None


class MessagesRequest(CountTokensRequest):
    """The body of `POST /v1/messages`."""

    max_tokens: int = Field(ge=1, le=INT32_MAX)
    stream: bool | None = False
    stop_sequences: list[str] | None = None
    temperature: float | None = Field(default=None, ge=0, le=1)
    top_p: float | None = Field(default=None, ge=0, le=1)
    top_k: int | None = Field(default=None, ge=0)
    metadata: Metadata | None = None
