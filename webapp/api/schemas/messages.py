"""POST /v1/messages and /v1/messages/count_tokens: Anthropic's Messages request and answer, declared once.

The top level is closed (Anthropic refuses unknown fields too); content blocks, tools and tool choices are declared
by their common fields and checked in full by services/messages_translate.py, which refuses by name (400) what it
cannot translate."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from webapp.api.schemas import MAX_TOKENS_CEILING, MODEL_ID, NOT_BLANK_NO_NUL, V1Object

MAX_MESSAGES = 1000
MAX_BLOCKS = 1000
ModelName = Annotated[str, Field(min_length=1, max_length=200, pattern=MODEL_ID,
                                 description="A model id, or `provider/model` to pin a provider.")]


class MessagesBody(BaseModel):
    """A Messages body: strict types, unknown top-level fields refused (as Anthropic does)."""

    model_config = ConfigDict(strict=True, extra="forbid")


class ContentBlock(V1Object):
    """A content block: `text`, `image` (base64 or url source), `tool_use` (assistant) or `tool_result` (user).
    Other types (documents, thinking, server tools) are refused by name."""

    type: Annotated[str, Field(min_length=1, max_length=64)]


class InputMessage(V1Object):
    role: Literal["user", "assistant"]
    content: str | Annotated[list[ContentBlock], Field(max_length=MAX_BLOCKS)]


class SystemBlock(V1Object):
    type: Literal["text"]
    text: str


class Tool(V1Object):
    """A custom tool. Server tools (`type` web_search_..., bash_..., ...) are refused by name."""

    name: Annotated[str, Field(min_length=1, max_length=128)]
    description: str | None = None
    input_schema: dict[str, Any]


class ToolChoice(V1Object):
    type: Literal["auto", "any", "tool", "none"]
    name: str | None = None
    disable_parallel_tool_use: bool | None = None


class Metadata(V1Object):
    user_id: Annotated[str, Field(max_length=256)] | None = None
    task: Annotated[str, Field(min_length=1, max_length=64, pattern=NOT_BLANK_NO_NUL)] | None = Field(
        default=None, description="Switchboard: a task name that selects a task override (X-Switchboard-Task wins).")


class _Common(MessagesBody):
    model: ModelName
    messages: Annotated[list[InputMessage], Field(min_length=1, max_length=MAX_MESSAGES)]
    system: str | list[SystemBlock] | None = None
    tools: Annotated[list[Tool], Field(max_length=128)] | None = None
    tool_choice: ToolChoice | None = None
    thinking: dict[str, Any] | None = Field(default=None, description="Only `{\"type\": \"disabled\"}` is "
                                            "accepted: extended thinking is not translated.")
    cache_control: dict[str, Any] | None = Field(default=None, description="A prompt-caching hint: forwarded to an "
                                                 "Anthropic provider (as on blocks and tools), left out for others.")


class MessagesRequest(_Common):
    max_tokens: Annotated[int, Field(ge=1, le=MAX_TOKENS_CEILING)] = Field(
        description="The output limit. In member mode Switchboard writes upstream the smallest of this, the model's "
                    "maximum output, the room left in its context window and what the reservation pays for.")
    stream: bool | None = None
    stop_sequences: Annotated[list[Annotated[str, Field(min_length=1)]], Field(max_length=16)] | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    top_p: Annotated[float, Field(ge=0, le=1)] | None = None
    top_k: Annotated[int, Field(ge=0)] | None = None
    metadata: Metadata | None = None
    service_tier: Literal["auto", "standard_only"] | None = None


class CountTokensRequest(_Common):
    pass


class MessageUsage(V1Object):
    input_tokens: int = Field(description="Prompt tokens not read from or written to the cache.")
    output_tokens: int
    cache_read_input_tokens: int | None = None
    cache_creation_input_tokens: int | None = None


class Message(V1Object):
    id: str
    type: Literal["message"]
    role: Literal["assistant"]
    model: str
    content: list[dict[str, Any]]
    stop_reason: Literal["end_turn", "max_tokens", "stop_sequence", "tool_use", "pause_turn", "refusal"] | None
    stop_sequence: str | None = None
    usage: MessageUsage
    switchboard: dict[str, Any] | None = Field(default=None, description="The receipt: what was charged and why.")


class MessageTokensCount(V1Object):
    input_tokens: int
    switchboard_estimated: bool = Field(description="True: counted with tiktoken here (the provider's own tokenizer "
                                                    "may count differently).")
    encoding: str = Field(description="The tiktoken encoding used (o200k_base or cl100k_base).")


class AnthropicErrorDetail(V1Object):
    type: str
    message: str
    code: str | None = Field(default=None, description="Switchboard's stable error code.")


class AnthropicError(V1Object):
    type: Literal["error"]
    error: AnthropicErrorDetail


class MessageStreamEvent(V1Object):
    """One SSE event's data: message_start, content_block_start / _delta / _stop, message_delta, message_stop,
    ping or error."""

    type: str


DECLARED = (MessagesRequest, CountTokensRequest, Message, MessageTokensCount, AnthropicError, MessageStreamEvent)
