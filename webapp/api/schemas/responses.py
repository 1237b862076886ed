"""POST /v1/responses: OpenAI's Responses API request, its response object and its stream events, declared once.

Input items and content parts are tagged by `type` (a message item may leave it out: it has a `role`). A type this
declaration does not know (`reasoning`, `input_file`, `web_search`, ...) is kept as an `*Other*` object: a provider
that speaks the Responses API receives it as sent; translating for any other provider refuses it by name
(services/responses_translate.py), never drops it."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Discriminator, Field, Tag

from webapp.api.schemas import MAX_TOKENS_CEILING, MODEL_ID, V1Body, V1Object, other_than

MAX_INPUT_ITEMS = 1000
MAX_TOOLS = 128

ModelName = Annotated[str, Field(min_length=1, max_length=200, pattern=MODEL_ID,
                                 description="`model` (any provider serving it) or `provider/model`.")]
Name = Annotated[str, Field(min_length=1, max_length=128)]
CallId = Annotated[str, Field(min_length=1, max_length=256)]


# -- content parts --------------------------------------------------------------------------------------------------

class ResponseInputText(V1Object):
    type: Literal["input_text"]
    text: str


class ResponseOutputTextPart(V1Object):
    """Assistant text sent back as history."""

    type: Literal["output_text"]
    text: str


class ResponseRefusalPart(V1Object):
    type: Literal["refusal"]
    refusal: str


class ResponseInputImage(V1Object):
    type: Literal["input_image"]
    image_url: str | None = Field(None, description="An http(s) URL or a `data:` URL.")
    file_id: str | None = Field(None, description="An uploaded file (providers that speak the Responses API only).")
    detail: Literal["low", "high", "auto"] | None = None


_PART_TYPES = ("input_text", "output_text", "refusal", "input_image")


class ResponseOtherPart(V1Object):
    """A part type not declared here (`input_file`, `input_audio`, ...)."""

    model_config = ConfigDict(json_schema_extra=other_than(*_PART_TYPES))

    type: Annotated[str, Field(min_length=1, max_length=64)]


def _type_of(value: Any) -> Any:
    """A value's `type`: a dict's key while validating, a model's attribute while serializing."""
    return value.get("type") if isinstance(value, dict) else getattr(value, "type", None)


def _part_tag(value: Any) -> str:
    kind = _type_of(value)
    return kind if kind in _PART_TYPES else "other"


ResponseContentPart = Annotated[
    Annotated[ResponseInputText, Tag("input_text")] | Annotated[ResponseOutputTextPart, Tag("output_text")]
    | Annotated[ResponseRefusalPart, Tag("refusal")] | Annotated[ResponseInputImage, Tag("input_image")]
    | Annotated[ResponseOtherPart, Tag("other")],
    Discriminator(_part_tag),
]


# -- input items ----------------------------------------------------------------------------------------------------

class ResponseMessageItem(V1Object):
    type: Literal["message"] = "message"
    role: Literal["user", "assistant", "system", "developer"]
    content: str | Annotated[list[ResponseContentPart], Field(max_length=1000)]


class ResponseFunctionCallItem(V1Object):
    """A function call the model made earlier, sent back as history."""

    type: Literal["function_call"]
    call_id: CallId
    name: Name
    arguments: str


class ResponseFunctionCallOutputItem(V1Object):
    """The result of a function call."""

    type: Literal["function_call_output"]
    call_id: CallId
    output: str | Annotated[list[ResponseContentPart], Field(max_length=1000)]


_ITEM_TYPES = ("message", "function_call", "function_call_output")


class ResponseOtherItem(V1Object):
    """An item type not declared here (`reasoning`, `item_reference`, built-in tool calls, ...)."""

    model_config = ConfigDict(json_schema_extra=other_than(*_ITEM_TYPES))

    type: Annotated[str, Field(min_length=1, max_length=64)]


def _item_tag(value: Any) -> str:
    kind = _type_of(value)
    if kind is None and isinstance(value, dict) and "role" in value:
        return "message"
    return kind if kind in _ITEM_TYPES else "other"


ResponseInputItem = Annotated[
    Annotated[ResponseMessageItem, Tag("message")] | Annotated[ResponseFunctionCallItem, Tag("function_call")]
    | Annotated[ResponseFunctionCallOutputItem, Tag("function_call_output")]
    | Annotated[ResponseOtherItem, Tag("other")],
    Discriminator(_item_tag),
]


# -- tools and options ----------------------------------------------------------------------------------------------

class ResponseFunctionTool(V1Object):
    type: Literal["function"]
    name: Name
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class ResponseOtherTool(V1Object):
    """A built-in tool (`web_search`, `file_search`, ...): providers that speak the Responses API only, BYOK only."""

    model_config = ConfigDict(json_schema_extra=other_than("function"))

    type: Annotated[str, Field(min_length=1, max_length=64)]


def _tool_tag(value: Any) -> str:
    return "function" if _type_of(value) == "function" else "other"


ResponseTool = Annotated[
    Annotated[ResponseFunctionTool, Tag("function")] | Annotated[ResponseOtherTool, Tag("other")],
    Discriminator(_tool_tag),
]


class ResponseToolChoiceObject(V1Object):
    type: Annotated[str, Field(min_length=1, max_length=64)]
    name: Name | None = None


class ResponseTextFormat(V1Object):
    type: Literal["text", "json_object", "json_schema"]
    name: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    description: str | None = None
    strict: bool | None = None


class ResponseTextConfig(V1Object):
    format: ResponseTextFormat | None = None


class ResponseReasoningConfig(V1Object):
    effort: Annotated[str, Field(min_length=1, max_length=16)] | None = None
    summary: str | None = None


class ResponsesRequest(V1Body):
    """OpenAI's Responses API request. Fields not declared here pass through to a provider that speaks the
    Responses API; translating for any other provider refuses them by name (400 `unsupported_parameter`)."""

    model: ModelName
    input: (Annotated[str, Field(min_length=1)]
            | Annotated[list[ResponseInputItem], Field(min_length=1, max_length=MAX_INPUT_ITEMS)])
    instructions: str | None = None
    max_output_tokens: Annotated[int, Field(ge=1, le=MAX_TOKENS_CEILING)] | None = Field(
        None, description="Member mode reserves credits for this many output tokens (clamped like max_tokens).")
    stream: bool | None = Field(None, description="true: a text/event-stream of Responses events.")
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    top_p: Annotated[float, Field(ge=0, le=1)] | None = None
    tools: Annotated[list[ResponseTool], Field(max_length=MAX_TOOLS)] | None = None
    tool_choice: Literal["auto", "none", "required"] | ResponseToolChoiceObject | None = None
    parallel_tool_calls: bool | None = None
    text: ResponseTextConfig | None = None
    reasoning: ResponseReasoningConfig | None = None
    store: bool | None = Field(None, description="Kept by providers that speak the Responses API; a translated "
                                                 "answer is never stored (its `store` is false).")
    previous_response_id: Annotated[str, Field(min_length=1, max_length=256)] | None = Field(
        None, description="Providers that speak the Responses API only; 400 `unsupported_parameter` otherwise.")
    metadata: Annotated[dict[str, str], Field(max_length=16)] | None = Field(
        None, description="Its `task` (1 to 64 characters) selects a task override unless X-Switchboard-Task is "
                          "sent; `task` is not forwarded.")
    user: str | None = None


# -- the answer -----------------------------------------------------------------------------------------------------

class ResponseInputTokensDetails(V1Object):
    cached_tokens: int = 0


class ResponseOutputTokensDetails(V1Object):
    reasoning_tokens: int = 0


class ResponseUsage(V1Object):
    """The tokens charged: the provider's, or Switchboard's count when `switchboard_estimated` is true."""

    input_tokens: int
    input_tokens_details: ResponseInputTokensDetails | None = None
    output_tokens: int
    output_tokens_details: ResponseOutputTokensDetails | None = None
    total_tokens: int
    switchboard_estimated: bool | None = None


class ResponseObject(V1Object):
    """A response: the provider's own when it speaks the Responses API, else translated from its chat completion."""

    id: str
    object: Literal["response"]
    created_at: int | float | None = None
    status: str | None = Field(None, description="`completed`, `incomplete` (see incomplete_details), `failed`.")
    model: str | None = None
    output: list[dict[str, Any]] = Field(description="Items: `message` (output_text parts), `function_call`, ...")
    usage: ResponseUsage | None = None
    error: dict[str, Any] | None = None
    incomplete_details: dict[str, Any] | None = None
    store: bool | None = None
    switchboard: dict[str, Any] | None = Field(
        None, description="Streams only, in response.completed: the receipt (as in a chat stream's last chunk).")


class ResponseStreamEvent(V1Object):
    """One typed stream event: response.created, response.in_progress, response.output_item.added,
    response.content_part.added, response.output_text.delta, response.output_text.done,
    response.function_call_arguments.delta/.done, response.output_item.done, response.completed (or
    response.incomplete / response.failed), or `error`."""

    type: str
    sequence_number: int
    response: ResponseObject | None = None
    item: dict[str, Any] | None = None
    output_index: int | None = None
    content_index: int | None = None
    item_id: str | None = None
    delta: str | None = None


DECLARED = (ResponsesRequest, ResponseObject, ResponseStreamEvent)
