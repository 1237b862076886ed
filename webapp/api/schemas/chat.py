"""POST /v1/chat/completions: OpenAI's chat-completions request, declared once. The route validates the body's
shape with it; services/chat_request.py then applies the operator's limits (MAX_MESSAGES, MAX_TOKENS_CEILING) and
reads what the gateway needs. Fields not declared here pass through to the provider untouched."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from webapp.api.schemas import MAX_TOKENS_CEILING, MODEL_ID, V1Body, V1Object

MAX_CHOICES = 128


def _passed(what: str) -> Any:
    return Field(None, description=f"{what} Passed through to the provider unchecked.")


Limit = Annotated[int, Field(ge=1, le=MAX_TOKENS_CEILING)]


class ChatMessage(V1Object):
    """Switchboard checks `role` and the type of `content`; everything else goes to the provider as sent."""

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[Any] | None = Field(None, description="Text, or an array of content parts (text, "
                                                              "image_url, ...).")
    name: Any = _passed("A string.")
    tool_calls: Any = _passed("An array of tool calls (assistant messages).")
    tool_call_id: Any = _passed("A string (tool messages).")


class ChatStreamOptions(V1Object):
    include_usage: Any = _passed("true: the stream ends with a chunk holding `usage` and the `switchboard` receipt "
                                 "(any truthy value counts).")


class ChatCompletionRequest(V1Body):
    """OpenAI's chat-completions body. Fields Switchboard does not know pass through to the provider untouched."""

    model: Annotated[str, Field(min_length=1, max_length=200, pattern=MODEL_ID)] = Field(
        description="`model` (any provider serving it) or `provider/model`, such as `openai/gpt-4o-mini`. At most "
                    "200 characters.")
    messages: Annotated[list[ChatMessage], Field(min_length=1)] = Field(
        description="At most MAX_MESSAGES (1000 by default) messages.")
    stream: bool = Field(False, description="true: the answer is a text/event-stream of chat.completion.chunk "
                                            "events.")
    stream_options: ChatStreamOptions | None = None
    max_tokens: Limit | None = Field(None, description="1 to MAX_TOKENS_CEILING (262144 by default). Member mode "
                                                       "reserves credits for this many output tokens.")
    max_completion_tokens: Limit | None = Field(None, description="Like max_tokens; the smaller of the two (and "
                                                                  "of max_output_tokens) is the limit.")
    n: Annotated[int, Field(ge=1, le=MAX_CHOICES)] | None = Field(None, description="Choices, 1 to 128; member "
                                                                                    "mode reserves for each.")
    metadata: Any = _passed("An object. Its `task` string (1 to 64 characters) selects a task override unless "
                            "X-Switchboard-Task is sent; `task` is not forwarded, the rest is.")
    tools: Any = _passed("An array of function tools.")
    tool_choice: Any = _passed("`auto`, `none`, `required` or a tool.")
    temperature: Any = _passed("A number.")
    top_p: Any = _passed("A number.")
    stop: Any = _passed("A string or an array of strings.")
    response_format: Any = _passed("An object such as {\"type\": \"json_object\"}.")
    seed: Any = _passed("An integer.")
    user: Any = _passed("A string.")


DECLARED = (ChatCompletionRequest,)
