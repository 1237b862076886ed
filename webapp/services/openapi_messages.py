"""The OpenAPI description of Anthropic's Messages API on Switchboard (POST /v1/messages, /v1/messages/count_tokens),
merged into openapi_doc's document. Bodies come from webapp/api/schemas/messages.py (one declaration)."""

from __future__ import annotations

import functools
from typing import Any

from webapp.services.openapi_doc import (
    RECEIPT_HEADERS,
    RETRY_AFTER,
    TEAM_HEADER,
    _body,
    _json,
    _op,
    _param,
    declared,
    integer,
    obj,
    ref,
    string,
)

Schema = dict[str, Any]


def schemas() -> dict[str, Schema]:
    from webapp.api.schemas import messages  # pure declarations (pydantic, no Flask)

    out = declared(*messages.DECLARED)
    out["MessageEvent"] = obj({
        "event": string("The event's type: message_start, ping, content_block_start, content_block_delta, "
                        "content_block_stop, message_delta, message_stop or error."),
        "data": {"type": "string", "contentMediaType": "application/json",
                 "contentSchema": {"anyOf": [ref("MessageStreamEvent"), ref("AnthropicError")]},
                 "description": "The event as JSON text."},
        "id": string(), "retry": integer(),
    }, ["data"], extra=True, description="One server-sent event of a streamed message (`event:`, `data:` and a blank "
                                         "line). The receipt follows message_delta as an SSE comment, "
                                         "`: switchboard {json}`; an upstream failure mid-stream is an `error` event "
                                         "(refunded in full).")
    return out


def paths(chat_headers: list[Schema]) -> dict[str, Schema]:
    error = functools.partial(_json, ref("AnthropicError"))
    errors: dict[str, Schema] = {
        "400": error("Not a valid Messages request (`invalid_value` naming the field, `invalid_json`), a part that "
                     "cannot be translated for the route (`untranslatable`, naming it: documents, server tools, "
                     "extended thinking, ...), or the provider rejected the request."),
        "401": error("No credential in `x-api-key` or `Authorization: Bearer`, or not a valid access token or "
                     "personal API key."),
        "402": error("Not enough credits for the worst case, or a monthly cap would be passed "
                     "(`billing_error`)."),
        "403": error("BYOK is not allowed for this provider, or not a member of the team billed."),
        "404": error("No provider serves the model you can use (`not_found_error`)."),
        "413": error("The body is larger than MAX_BODY_BYTES."),
        "429": {**error("Too many requests or streams, or the provider is rate limiting."), "headers": RETRY_AFTER},
        "502": error("The provider could not be reached, failed, or refused the admin key."),
        "503": error("The sign-in key service or the database is unavailable for a moment."),
        "504": error("The provider did not answer in time."),
    }
    create = _op(
        "createMessage", "OpenAI-compatible", "Create a message (Anthropic Messages API)",
        "Anthropic's wire format, for the `anthropic` SDKs: the credential in `x-api-key` (or `Authorization: "
        "Bearer`; an access token or a personal `sb_` key), `anthropic-version` tolerated. Routed like a chat "
        "completion (modes, routing, pins, fallbacks, limits, credits, receipts, logs) to any provider: an Anthropic "
        "provider receives the body as sent (its model and output limit Switchboard's); an OpenAI-compatible one its "
        "chat translation. Errors use Anthropic's shape (AnthropicError). A stream is Anthropic's events.",
        "user",
        {"200": {"description": "The message (JSON), or with `stream: true` a text/event-stream of Messages events.",
                 "headers": RECEIPT_HEADERS,
                 "content": {"application/json": {"schema": ref("Message")},
                             "text/event-stream": {"schema": ref("MessageEvent")}}},
         **errors},
        parameters=[*chat_headers, _param("anthropic-version", "header", string(), "Tolerated; not needed.")],
        body=_body(ref("MessagesRequest"), "An Anthropic Messages request."),
    )
    count = _op(
        "countMessageTokens", "OpenAI-compatible", "Count a message's input tokens (estimate)",
        "The prompt (messages, system, tools) counted with tiktoken, offline, as Switchboard's reservation counts "
        "it: o200k_base for OpenAI's current model families, cl100k_base (an approximation) for others, Claude "
        "included. Nothing is charged or sent to a provider; the call counts against the per-minute limit.",
        "user",
        {"200": _json(ref("MessageTokensCount"), "The estimate."),
         **{k: v for k, v in errors.items() if k in ("400", "401", "403", "413", "503")},
         "429": {**error("Too many requests a minute (`rate_limited`): counting counts against the limit."),
                 "headers": RETRY_AFTER}},
        parameters=[_param("anthropic-version", "header", string(), "Tolerated; not needed."), TEAM_HEADER],
        body=_body(ref("CountTokensRequest"), "A Messages request without max_tokens."),
    )
    return {"/v1/messages": {"post": create}, "/v1/messages/count_tokens": {"post": count}}
