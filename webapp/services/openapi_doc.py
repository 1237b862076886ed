"""The OpenAPI 3.1 document of every JSON route and the OpenAI-compatible /v1 routes, built as plain Python data.

Each schema mirrors the dict builder that produces it (services/*: to_dict, key_dict, provider_dict, user_dict,
log_dict, ...): integers stay integers, credit amounts are strings with six decimals, nullable fields are typed
[X, "null"]. tests/api/test_openapi.py checks that every Flask rule has an operation here (and the reverse) and that
each operation's `x-auth` matches the guard on its view; tests/fuzz/test_schemathesis.py fuzzes a live server
against it. No Flask here: the blueprint in webapp/api/openapi.py serves it and renders the docs page from it."""

from __future__ import annotations

import copy
import functools
from typing import Any

Schema = dict[str, Any]

VERSION = "1.0.0"

# -- small builders -----------------------------------------------------------------------------------------------


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(schema: Schema) -> Schema:
    """`schema` that also allows null: a type list when it has a plain type, else anyOf with null."""
    out = dict(schema)
    kind = out.get("type")
    if isinstance(kind, str):
        out["type"] = [kind, "null"]
        return out
    return {"anyOf": [schema, {"type": "null"}]}


def obj(properties: dict[str, Schema], required: list[str] | None = None, *, extra: bool | Schema = False,
        description: str | None = None) -> Schema:
    out: Schema = {"type": "object", "properties": properties,
                   "required": list(properties) if required is None else required,
                   "additionalProperties": extra}
    if description:
        out["description"] = description
    return out


def array(items: Schema, description: str | None = None, **extra: Any) -> Schema:
    out: Schema = {"type": "array", "items": items, **extra}
    if description:
        out["description"] = description
    return out


def string(description: str | None = None, **extra: Any) -> Schema:
    out: Schema = {"type": "string", **extra}
    if description:
        out["description"] = description
    return out


def integer(description: str | None = None, **extra: Any) -> Schema:
    out: Schema = {"type": "integer", **extra}
    if description:
        out["description"] = description
    return out


def declared(*models: Any) -> dict[str, Schema]:
    """Component schemas derived from pydantic models (webapp/api/schemas): each model under its class name, the
    models it nests hoisted from `$defs` into components beside it, every `$ref` pointing there. The request a
    route validates with and the schema this document shows are then one declaration."""
    out: dict[str, Schema] = {}
    for model in models:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        for name, sub in schema.pop("$defs", {}).items():
            out[name] = sub
        out[model.__name__] = schema
    return out


def _declared_schemas() -> dict[str, Schema]:
    from webapp.api.schemas import chat, embeddings, responses  # pure declarations (pydantic, no Flask)

    return declared(*chat.DECLARED, *responses.DECLARED, *embeddings.DECLARED)


BOOL: Schema = {"type": "boolean"}
UUID: Schema = {"type": "string", "format": "uuid"}
DATE: Schema = {"type": "string", "format": "date"}
DATETIME: Schema = {"type": "string", "format": "date-time"}
CREDITS = ref("Credits")
MICRO = integer("The same amount in micro-credits (1 credit = 1,000,000 micro-credits).")
MULTIPLIER = ref("Multiplier")
SLUG = string("A provider slug, such as `openai`.")
SPLIT_TOKENS: dict[str, Schema] = {  # parts of tokens_in / tokens_out, as the provider reported them
    "cached_tokens": integer("Of tokens_in: read from the provider's prompt cache."),
    "cache_write_tokens": integer("Of tokens_in: written to the provider's prompt cache."),
    "reasoning_tokens": integer("Of tokens_out: the model's hidden reasoning."),
}
PROVIDER_SLUG_PATTERN = "^[a-z0-9][a-z0-9_-]{0,39}$"
# Postgres text cannot hold NUL: every text field that is stored (or searched for) refuses it.
NO_NUL = r"^[^\x00]*$"
MODEL_PATTERN = r"^\s*[^\s\x00]{1,200}\s*$"  # trimmed, then 1 to 200 characters without whitespace
KEY_PATTERN = r"^\s*[!-~]{8,500}\s*$"  # printable ASCII: it travels in an HTTP header
NOT_BLANK_NO_NUL = r"^[^\x00]*[^\s\x00][^\x00]*$"
EMPTY: Schema = {"type": "string", "maxLength": 0, "description": "Empty: the default."}


def or_empty(schema: Schema) -> Schema:
    """A query parameter that may also be sent empty (`?page=`), which means its default, as HTML forms send it.
    `null` is listed too: on the wire a null query value is that same empty string."""
    return {"anyOf": [schema, EMPTY, {"type": "null"}]}


def filter_param(core: str, description: str) -> Schema:
    """An admin report filter: trimmed, then empty (no filter) or matching `core`."""
    return string(description + " Surrounding whitespace is ignored; empty means no filter.",
                  pattern=rf"^\s*({core})?\s*$")


DATE_CORE = "[0-9]{4}-[0-9]{2}-[0-9]{2}"


def passed(what: str) -> Schema:
    """A field Switchboard forwards without checking it: documented, but with no type to enforce."""
    return {"description": f"{what} Passed through to the provider unchecked."}


def _json(schema: Schema, description: str) -> Schema:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _body(schema: Schema, description: str, *, required: bool = True) -> Schema:
    return {"required": required, "description": description, "content": {"application/json": {"schema": schema}}}


def _resp(name: str) -> Schema:
    return {"$ref": f"#/components/responses/{name}"}


# -- schemas ------------------------------------------------------------------------------------------------------

ERROR_SCHEMAS: dict[str, Schema] = {
    "ApiError": obj({
        "error": obj({
            "code": string("A stable machine-readable code, such as `missing_token`, `not_found`, "
                           "`provider_not_found`, `admin_required`, `validation_error`."),
            "message": string("A human-readable explanation; never a stack trace or a secret."),
            "fields": {"type": "object", "additionalProperties": {"type": "string"},
                       "description": "Validation failures only: one message per invalid field."},
        }, ["code", "message"], extra=True),
    }, description="The error shape of every /api route (and of /healthz-style JSON routes when they fail)."),
    "ApiValidationError": obj({
        "error": obj({
            "code": string("Always `validation_error`.", enum=["validation_error"]),
            "message": string(),
            "fields": {"type": "object", "additionalProperties": {"type": "string"},
                       "description": "One message per invalid field (`body` when the body is not a JSON object)."},
            "offered": obj({
                "mode": string(enum=["member", "byok"]),
                "providers": array(obj({"provider": SLUG, "models": nullable(array(string()))}),
                                   "Each provider offered in that mode and its models (null: any model)."),
            }, description="Settings only, when a default provider or a task override is not offered to you."),
        }, ["code", "message", "fields"]),
    }, description="422: the request was understood but some fields are not valid."),
    "OpenAIError": obj({
        "error": obj({
            "message": string("A human-readable explanation; never a stack trace or a secret."),
            "type": string("OpenAI's error type: `invalid_request_error`, `authentication_error`, "
                           "`permission_error`, `insufficient_quota`, `rate_limit_error` or `api_error`."),
            "param": nullable(string("The request field or header at fault, when there is one.")),
            "code": nullable(string("A stable machine-readable code, such as `model_not_found`, "
                                    "`insufficient_credits`, `upstream_unreachable`.")),
        }),
    }, description="The error shape of every /v1 route: OpenAI's, so OpenAI SDKs raise their usual exceptions."),
}

COMMON_SCHEMAS: dict[str, Schema] = {
    "Credits": string("An amount of credits as a decimal string with exactly six decimals (micro-credit "
                      "precision), such as `12.500000`; negative for deductions.", pattern=r"^-?[0-9]+\.[0-9]{6}$"),
    "Multiplier": string("A credit multiplier as a decimal string with trailing zeros removed, such as `1`, `1.5` "
                         "or `0.1`. Whole multiples of ten come out in exponent form (`1E+1` for 10, `1E+2` for "
                         "100): that is how Python's Decimal.normalize() prints them.",
                         pattern=r"^[0-9]+(\.[0-9]+)?(E\+[0-9]+)?$"),
    "KeyCheck": obj({
        "status": string("`ok`: the provider accepted the key; `rejected`: it refused it (401/403); "
                         "`unreachable`: it could not be checked now (the key is saved anyway); "
                         "`skipped`: not tested.", enum=["ok", "rejected", "unreachable", "skipped"]),
        "message": string(),
    }, description="The outcome of a cheap models-list call made with a key just saved."),
}

V1_SCHEMAS: dict[str, Schema] = {
    "ChatCompletion": obj({
        "id": string(),
        "object": string(examples=["chat.completion"]),
        "created": integer(),
        "model": string(),
        "choices": array({"type": "object"}),
        "usage": nullable({"type": "object", "description": "The provider's usage; the numbers Switchboard charged "
                           "when it counted them itself, with `switchboard_estimated` (boolean) saying so."}),
    }, ["choices"], extra=True,
        description="The provider's chat.completion object, passed through as the provider sent it (an Anthropic "
                    "answer is translated to this shape)."),
    "ChatCompletionChunk": obj({
        "id": string(),
        "object": string(examples=["chat.completion.chunk"]),
        "created": integer(),
        "model": string(),
        "choices": array({"type": "object"}, "Deltas; empty in the final usage chunk."),
        "usage": nullable({"type": "object", "description": "In the final usage chunk: the tokens charged and "
                           "`switchboard_estimated` (boolean)."}),
        "switchboard": ref("StreamReceipt"),
    }, [], extra=True, description="One streamed chunk, as the provider sent it (an Anthropic stream is translated "
                                   "to this shape). The last one, with stream_options.include_usage, holds `usage` "
                                   "and the `switchboard` receipt."),
    "StreamReceipt": obj({
        "request_id": UUID, "mode": string(enum=["member", "byok"]), "provider": SLUG, "model": string(),
        "credits": CREDITS, "multiplier": MULTIPLIER, "usage": string(enum=["measured", "estimated", "corrected"]),
        "fallback_path": array(string(), "provider:outcome per attempt."),
        "prompt_tokens": integer("Prompt tokens charged."), "completion_tokens": integer("Output tokens charged."),
        "cached_tokens": integer("Of the prompt tokens, those the provider served from its cache (charged at the "
                                 "model's cached-input rate)."),
        "cache_write_tokens": integer("Of the prompt tokens, those written to the provider's cache (charged at the "
                                      "model's cache-write rate; the input rate when it has none)."),
        "reasoning_tokens": integer("Of the completion tokens, hidden reasoning (already inside completion_tokens: "
                                    "charged once, at the output rate)."),
    }, description="What the X-Switchboard-* headers of a JSON answer say, for a stream (whose headers left "
                   "before the cost was known). Without stream_options.include_usage, the same receipt closes the "
                   "stream as an SSE comment, `: switchboard {json}`, just before `data: [DONE]`."),
    "ChatCompletionEvent": obj({
        "data": {"anyOf": [
            {"const": "[DONE]", "description": "The last event."},
            {"type": "string", "contentMediaType": "application/json",
             "contentSchema": {"anyOf": [ref("ChatCompletionChunk"), ref("OpenAIError")]},
             "description": "A chunk as JSON text; an upstream failure mid-stream arrives as an OpenAIError "
                            "(code `upstream_stream_interrupted`) just before [DONE]."},
        ]},
        "event": string(), "id": string(), "retry": integer(),
    }, ["data"], extra=True, description="One server-sent event of a streamed chat completion (`data: ...` and a "
                                         "blank line)."),
    "Model": obj({
        "id": string("`provider/model`, usable as `model` in a chat completion."),
        "object": string(enum=["model"]),
        "created": integer("Always 0.", enum=[0]),
        "owned_by": SLUG,
    }),
    "ModelList": obj({"object": string(enum=["list"]), "data": array(ref("Model"))},
                     description="The models this user can call right now, in their current mode."),
    "ResponseEvent": obj({
        "data": {"type": "string", "contentMediaType": "application/json",
                 "contentSchema": {"anyOf": [ref("ResponseStreamEvent"), ref("OpenAIError")]},
                 "description": "The event as JSON text."},
        "event": string("The event's `type`."), "id": string(), "retry": integer(),
    }, ["data"], extra=True, description="One server-sent event of a streamed response (`event:`, `data:` and a "
                                         "blank line). An upstream failure mid-stream is an `error` event then "
                                         "response.failed (refunded in full)."),
}

USER_SCHEMAS: dict[str, Schema] = {
    "TaskOverride": obj({"provider": SLUG,
                         "model": string(minLength=1, maxLength=200, pattern=NOT_BLANK_NO_NUL)}),
    "UserSettings": obj({
        "username": nullable(string(pattern=r"^[A-Za-z0-9_.-]{3,32}$")),
        "first_name": string(maxLength=80),
        "last_name": string(maxLength=80),
        "email_notifications": BOOL,
        "marketing_emails": BOOL,
        "llm_mode": string("`member`: requests spend credits on admin keys; `byok`: your own keys.",
                           enum=["member", "byok"]),
        "default_provider": nullable(SLUG),
        "fallbacks_enabled": BOOL,
        "never_spend_credits": BOOL,
        "allow_dearer_fallbacks": {"type": "boolean", "description": "Off (default): credits are reserved for the "
                                   "first route and a fallback never costs more per token. On: the reservation "
                                   "covers the dearest fallback."},
        "provider_priorities": array(SLUG),
        "task_overrides": {"type": "object", "additionalProperties": ref("TaskOverride")},
        "monthly_credit_cap": nullable(ref("Credits")),
    }),
    "UserSettingsEnvelope": obj({"settings": ref("UserSettings")}),
    "UserSettingsUpdate": obj({
        "username": nullable(string("3 to 32 letters, digits, dots, dashes or underscores; empty or null "
                                    "clears it.", pattern=r"^([A-Za-z0-9_.-]{3,32})?$")),
        "first_name": string("At most 80 characters (trimmed).", maxLength=80, pattern=NO_NUL),
        "last_name": string("At most 80 characters (trimmed).", maxLength=80, pattern=NO_NUL),
        "email_notifications": BOOL,
        "marketing_emails": BOOL,
        "llm_mode": string(enum=["member", "byok"]),
        "default_provider": nullable(string("A provider offered to you in your mode (member: enabled and ready "
                                            "for members; BYOK: one you stored a key for that allows BYOK); empty "
                                            "or null clears it.")),
        "fallbacks_enabled": BOOL,
        "never_spend_credits": BOOL,
        "allow_dearer_fallbacks": BOOL,
        "provider_priorities": array(SLUG, "Distinct known provider slugs, most preferred first.",
                                     uniqueItems=True),
        "task_overrides": {"type": "object", "maxProperties": 50,
                           "propertyNames": {"pattern": r"^[A-Za-z0-9_.-]{1,64}$"},
                           "additionalProperties": ref("TaskOverride"),
                           "description": "Task name to {provider, model}; the provider and model must be "
                                          "offered to you in your mode (a 422 lists what is, in `error.offered`)."},
        "monthly_credit_cap": {"type": ["number", "string", "null"],
                               "description": "Credits (0 to 1,000,000,000) as a number or a decimal string; "
                                              "null or empty for no cap."},
    }, [], description="Only the fields sent are changed; an unknown field is a validation error."),
    "UserKey": obj({
        "provider": SLUG,
        "last4": string("The key's last four characters.", maxLength=4),
        "base_url": nullable(string("A custom base URL, when the provider allows one.")),
        "enabled": BOOL,
        "priority": integer(),
        "last_used_at": nullable(DATETIME),
    }, description="A stored BYOK key as its owner sees it: never the key itself."),
    "UserKeyList": obj({"keys": array(ref("UserKey"))}),
    "UserKeyPut": obj({
        "api_key": string("The whole key: 8 to 500 printable ASCII characters, no whitespace.", minLength=8,
                          maxLength=500,
                          pattern=KEY_PATTERN),
        "base_url": nullable(string("http(s) URL of an OpenAI-compatible endpoint, for providers that allow "
                                    "one. Its host must resolve to public addresses only. Empty: none.",
                                    maxLength=500, pattern=NO_NUL)),
    }, ["api_key"], extra=True),
    "UserKeySaved": obj({"key": ref("UserKey"), "check": ref("KeyCheck")}),
    "UsageBucket": obj({
        "day": DATE, "provider": nullable(string()), "model": nullable(string()),
        "mode": string(enum=["member", "byok"]),
        "requests": integer(), "tokens_in": integer(), "tokens_out": integer(), "credits": CREDITS,
        "credits_micro": MICRO, "errors": integer("Requests answered with a status of 400 or more."),
        "api_key": nullable(UUID), "api_key_name": nullable(string("The key's name (revoked keys keep theirs).")),
        "team": nullable(string("The id of the team the requests were billed to (null: personal).")),
        **SPLIT_TOKENS,
    }, ["requests", "tokens_in", "tokens_out", "credits", "credits_micro", "errors", *SPLIT_TOKENS],
        description="Totals of one group; only the keys named in group_by are present."),
    "UsageTotals": obj({
        "requests": integer(), "tokens_in": integer(), "tokens_out": integer(), "credits": CREDITS,
        "credits_micro": MICRO, "errors": integer("Requests answered with a status of 400 or more."), **SPLIT_TOKENS,
    }, description="All the buckets added up."),
    "RecentRequest": obj({
        "request_id": UUID, "mode": string(enum=["member", "byok"]), "provider": nullable(string()),
        "model": nullable(string()), "tokens_in": integer(), "tokens_out": integer(),
        "usage": nullable(string(enum=["measured", "estimated", "corrected"])), "credits": CREDITS, "status": integer(),
        "error_code": nullable(string()), "created_at": DATETIME,
        "api_key_id": nullable(UUID), "api_key_name": nullable(string()),
    }, ["request_id", "mode", "provider", "model", "tokens_in", "tokens_out", "usage", "credits", "status",
        "error_code", "created_at"]),
    "UsageSummary": obj({
        "from": DATE, "to": DATE,
        "group_by": array(string(enum=["day", "provider", "model", "mode", "api_key", "team"]), minItems=1),
        "totals": ref("UsageTotals"),
        "buckets": array(ref("UsageBucket")),
        "recent": array(ref("RecentRequest"), "The 50 most recent requests, newest first.", maxItems=50),
    }),
    "LedgerEntry": obj({
        "id": integer(), "kind": string(enum=["grant", "deduct", "reserve", "settle", "refund", "shortfall"]),
        "delta": CREDITS, "delta_micro": MICRO, "balance_after": CREDITS, "request_id": nullable(UUID),
        "reason": string(), "created_at": DATETIME,
    }),
    "CreditsSummary": obj({"balance": CREDITS, "balance_micro": MICRO,
                           "ledger": array(ref("LedgerEntry"), "The 50 newest entries.", maxItems=50)}),
    "QuoteRequest": obj({
        "prompt": string("The prompt text (at most 400,000 characters, not blank).", minLength=1,
                         maxLength=400000, pattern=r"\S"),
        "max_tokens": integer("Output tokens to price (default 512).", minimum=1, maximum=1000000, default=512),
        "model": string("Price the routes the gateway would plan for this model (`provider/model` pins it), in "
                        "order, with the key's allow-list and mode when called with a personal API key.",
                        minLength=1, maxLength=200, pattern=r"^[!-~]+$"),
        "task": string("The task the request would name (its override applies).", minLength=1, maxLength=64,
                       pattern=NOT_BLANK_NO_NUL),
    }, ["prompt"], extra=True),
    "QuoteRoute": obj({
        "mode": string(enum=["member", "byok"]), "provider": SLUG, "model": string(),
        "prompt_tokens": integer(), "max_credits": CREDITS, "max_credits_micro": MICRO,
        "multiplier": MULTIPLIER, "context_window": integer(),
        "fits": {"type": "boolean", "description": "prompt_tokens + max_tokens fit the context window."},
        "rates": obj({"input_per_1k": CREDITS, "cached_input_per_1k": CREDITS, "cache_write_per_1k": CREDITS,
                      "output_per_1k": CREDITS},
                     description="Member routes: credits per 1,000 tokens of each kind before the multiplier "
                                 "(prompt tokens read from or written to the provider's cache, and output with "
                                 "its hidden reasoning). The worst case prices the prompt at the dearest."),
    }, ["mode", "provider", "model", "prompt_tokens", "max_credits", "max_credits_micro", "multiplier",
        "context_window", "fits"]),
    "Quote": obj({"max_tokens": integer(), "routes": array(ref("QuoteRoute")),
                  "model": string("With `model`: the model asked for."),
                  "reserve_credits": ref("Credits"),
                  "reserve_credits_micro": integer("With `model`: what the gateway would reserve for this prompt "
                                                   "as one user message with this max_tokens, in micro-credits (0 "
                                                   "in BYOK; absent when the prompt fits no route).")},
                 ["max_tokens", "routes"]),
}

PRICING_SCHEMAS: dict[str, Schema] = {
    "PublicModelRate": obj({"model": string(), "input_per_1k": CREDITS, "output_per_1k": CREDITS,
                            "context_window": integer()}),
    "PublicProvider": obj({
        "slug": SLUG, "name": string(), "api_style": string(enum=["openai", "anthropic"]),
        "multiplier": MULTIPLIER, "byok_allowed": BOOL, "default_model": string(),
        "models": array(ref("PublicModelRate")),
    }),
    "PublicProviderList": obj({"providers": array(ref("PublicProvider"))}),
}

def _totals() -> dict[str, Schema]:
    return {"requests": integer(), "tokens_in": integer(), "tokens_out": integer(), "credits": CREDITS,
            "credits_micro": MICRO, "errors": integer(),
            "error_rate": {"type": "number", "minimum": 0, "maximum": 1}}


ADMIN_SCHEMAS: dict[str, Schema] = {
    "AdminKey": obj({
        "id": UUID, "last4": string(maxLength=4), "label": string(maxLength=80),
        "state": string("`active` serves requests, `superseded` was rotated out, `revoked` never serves again.",
                        enum=["active", "superseded", "revoked"]),
        "active": BOOL, "encryption_key_id": string("The id of the ENCRYPTION_KEYS entry that sealed it."),
        "created_at": DATETIME, "revoked_at": nullable(DATETIME),
        "requests": integer("Requests served with this key."), "last_used_at": nullable(DATETIME),
    }, description="An admin key as admins see it: never the key or its ciphertext."),
    "AdminModelRate": obj({
        "id": UUID, "model": string(), "input_rate": integer("Micro-credits per 1,000 input tokens."),
        "output_rate": integer("Micro-credits per 1,000 output tokens."), "input_per_1k": CREDITS,
        "output_per_1k": CREDITS, "context_window": integer(),
        "max_output_tokens": integer("The most one answer may hold; the gateway writes it upstream."),
        "cached_input_rate": nullable(integer("Micro-credits per 1,000 cached input tokens; null: the input rate.")),
        "input_per_million": string("The input rate in credits per million tokens (a decimal string)."),
        "output_per_million": string("The output rate in credits per million tokens."),
        "cached_input_per_million": nullable(string("The cached-input rate in credits per million tokens.")),
        "enabled": {"type": "boolean", "description": "A disabled model is neither offered nor routed."},
        "kind": string("`chat` (chat completions, /v1/responses) or `embedding` (/v1/embeddings).",
                       enum=["chat", "embedding"]),
        "cache_write_rate": nullable(integer("Micro-credits per 1,000 tokens written to the provider's prompt "
                                             "cache; null: the input rate.")),
    }),
    "KeyStatus": obj({
        "source": string("Where member-mode requests get their key: an admin key in the `database`, the "
                         "`environment`, none needed (`local` engine), or `missing`.",
                         enum=["database", "environment", "local", "missing"]),
        "last4": nullable(string(maxLength=4)),
        "env_var": nullable(string("The environment variable that can hold this provider's admin key.")),
        "member_ready": BOOL,
    }),
    "EnvironmentKey": obj({"source": string(enum=["environment"]), "env_var": nullable(string()),
                           "last4": string(maxLength=4), "requests": integer()}),
    "AdminProvider": obj({
        "id": UUID, "slug": SLUG, "name": string(), "api_style": string(enum=["openai", "anthropic"]),
        "base_url": string(), "default_model": string(), "enabled": BOOL, "credit_multiplier": MULTIPLIER,
        "byok_allowed": BOOL, "custom_base_url_allowed": BOOL, "sort_order": integer(),
        "free_for_byok": {"type": "boolean", "description": "A keyless engine run by the operator may serve BYOK "
                                                            "requests at its own address (off: only at the user's)."},
        "models": array(ref("AdminModelRate")), "key_status": ref("KeyStatus"), "keys": array(ref("AdminKey")),
        "environment_key": nullable(ref("EnvironmentKey")),
        "needs_key": {"type": "boolean", "description": "Whether member mode needs a key to call it."},
        "responses_api": {"type": "boolean", "description": "/v1/responses is passed through to its /responses "
                                                            "(OpenAI wire style only); off: translated to chat."},
        "extra_headers": array(obj({"name": string(), "value": string()}),
                               "Sent upstream with every request (not secrets; never an auth header)."),
        "archived": {"type": "boolean", "description": "Retired with history: kept for the logs, hidden from users."},
        "archived_at": nullable(DATETIME),
    }),
    "AdminProviderList": obj({"providers": array(ref("AdminProvider"))}),
    "AdminProviderEnvelope": obj({"provider": ref("AdminProvider")}),
    "AdminProviderSettings": obj({
        "providers": array(ref("AdminProvider")),
        "multiplier_bounds": obj({"min": {"type": "number"}, "max": {"type": "number"}},
                                 description="MULTIPLIER_MIN and MULTIPLIER_MAX."),
    }),
    "ModelRateInput": obj({
        "model": string("1 to 200 characters, no spaces.", pattern=MODEL_PATTERN),
        "input_rate": {"type": ["integer", "string"], "description": "Micro-credits per 1K input tokens, 0 to 10^12."},
        "output_rate": {"type": ["integer", "string"],
                        "description": "Micro-credits per 1K output tokens, 0 to 10^12."},
        "context_window": {"description": "Tokens, 1 to 100,000,000: an integer or a string of digits; absent, "
                                          "null, 0 or any empty value means 8192."},
        "max_output_tokens": {"description": "Tokens, 1 to 10,000,000: the most one answer may hold; absent or "
                                             "empty means 4096."},
        "kind": {"description": "`chat` or `embedding`; absent or empty: chat."},
        "cache_write_rate": {"description": "Micro-credits per 1K tokens written to the provider's prompt cache, 0 "
                                            "to 10^12; null or empty: the input rate; absent: a model already "
                                            "offered keeps its rate (a new one: the input rate)."},
    }, ["model", "input_rate", "output_rate"], extra=True),
    "ProviderUpdate": obj({
        "name": string("1 to 80 characters.", minLength=1, maxLength=80, pattern=NOT_BLANK_NO_NUL),
        "api_style": string(enum=["openai", "anthropic"]),
        "base_url": string("An http(s) URL.", maxLength=500, pattern=r"^\s*https?://[^\x00]+$"),
        "default_model": string(pattern=MODEL_PATTERN),
        "enabled": {"type": ["boolean", "string"], "description": "true/false, or on/off, yes/no, 1/0."},
        "byok_allowed": {"type": ["boolean", "string"]},
        "custom_base_url_allowed": {"type": ["boolean", "string"]},
        "free_for_byok": {"type": ["boolean", "string"]},
        "credit_multiplier": {"type": ["number", "string"],
                              "description": "Within MULTIPLIER_MIN..MULTIPLIER_MAX, at most 4 decimals."},
        "sort_order": {"type": ["integer", "string"], "description": "0 to 100000."},
        "models": array(ref("ModelRateInput"), "The complete new list of model rates (replaces the old list).",
                        maxItems=500),
        "needs_key": {"type": ["boolean", "string"], "description": "Whether member mode needs a key."},
        "responses_api": {"type": ["boolean", "string"], "description": "The provider serves OpenAI's Responses "
                                                                        "API (/v1/responses passes through; OpenAI "
                                                                        "wire style only)."},
        "extra_headers": {"description": "Headers sent upstream with every request, at most 10: "
                                         "[{name, value}], [[name, value]], {name: value} or `Name: value` lines. "
                                         "Names are HTTP tokens; auth (Authorization, x-api-key, api-key), "
                                         "hop-by-hop and framing headers are refused; values 1 to 500 printable "
                                         "ASCII characters."},
    }, [], description="Only the fields sent change; an unknown or read-only field (slug) is a validation error."),
    "ProviderCreate": obj({
        "slug": string("1 to 40 of a-z, 0-9 and '-', starting with a letter or digit; unique, also among retired "
                       "providers; never changes.", pattern=r"^\s*[a-z0-9][a-z0-9-]{0,39}\s*$"),
        "name": string("1 to 80 characters.", minLength=1, maxLength=80, pattern=NOT_BLANK_NO_NUL),
        "api_style": string(enum=["openai", "anthropic"]),
        "base_url": string("An http(s) URL; private and loopback addresses are allowed (the operator's).",
                           maxLength=500, pattern=r"^\s*https?://[^\x00]+$"),
    }, ["slug", "name", "api_style", "base_url"], extra=True,
        description="Any ProviderUpdate field may be given too (except models); absent: enabled, needs a key, BYOK "
                    "allowed, multiplier 1, no extra headers, no default model (the first model added)."),
    "ProviderRetired": obj({"retired": obj({
        "slug": SLUG, "name": string(),
        "archived": {"type": "boolean", "description": "true: it had history and is archived; false: deleted."},
        "users_notified": integer("Users whose routing named it: cleaned up and left a notice."),
    })}),
    "FetchedModels": obj({
        "models": array(obj({"id": string(), "offered": BOOL}), "Valid ids the upstream listed, sorted, at most "
                                                               "2,000; `offered`: already on this provider."),
        "skipped": integer("Ids refused (not a valid model id) or beyond 2,000."),
    }),
    "ModelsAdd": obj({
        "models": array(string(pattern=MODEL_PATTERN), "Model ids to offer (1 to 2,000).", minItems=1,
                        maxItems=2000),
        "input_rate": {"type": ["integer", "string"], "description": "Micro-credits per 1K input tokens."},
        "output_rate": {"type": ["integer", "string"], "description": "Micro-credits per 1K output tokens."},
        "cached_input_rate": {"description": "Micro-credits per 1K cached input tokens; absent or empty: input."},
        "context_window": {"description": "Tokens, 1 to 100,000,000 (absent: 8192)."},
        "max_output_tokens": {"description": "Tokens, 1 to 10,000,000 (absent: 4096)."},
    }, ["models", "input_rate", "output_rate"], extra=True),
    "ModelsBulkEdit": obj({
        "rate_ids": array(UUID, "The models (their `id` in AdminModelRate) to change.", minItems=1),
        "field": string(enum=["input_rate", "output_rate", "cached_input_rate", "context_window",
                              "max_output_tokens", "enabled", "cache_write_rate"]),
        "value": {"description": "A whole number in the field's range; true/false for enabled; empty or null "
                                 "for cached_input_rate or cache_write_rate (the input rate)."},
    }, ["rate_ids", "field", "value"], extra=True),
    "AdminKeyCreate": obj({
        "api_key": string("8 to 500 printable ASCII characters, no whitespace.", minLength=8, maxLength=500,
                          pattern=KEY_PATTERN),
        "label": {"description": "At most 80 characters (a string; null, false, 0 or any empty value: no "
                                 "label)."},
        "rotate": {"type": ["boolean", "string"],
                   "description": "true: the provider's other active keys stop serving (kept until revoked)."},
    }, ["api_key"], extra=True),
    "AdminKeySaved": obj({
        "key": ref("AdminKey"), "superseded": array(UUID, "Keys this one rotated out."),
        "check": ref("KeyCheck"), "provider": ref("AdminProvider"),
    }),
    "EnabledUpdate": obj({"enabled": {"type": ["boolean", "string"]}}, ["enabled"], extra=True),
    "MultiplierUpdate": obj({"multiplier": {"type": ["number", "string"],
                                            "description": "Within MULTIPLIER_MIN..MULTIPLIER_MAX, at most 4 "
                                                           "decimals."}},
                            ["multiplier"], extra=True),
    "AdminUser": obj({
        "id": UUID, "email": string(), "is_admin": BOOL, "balance": CREDITS, "balance_micro": MICRO,
        "created_at": nullable(DATETIME), "last_sign_in_at": nullable(DATETIME),
    }),
    "AdminUserSearch": obj({"q": string("The query as used (trimmed, at most 200 characters)."),
                            "users": array(ref("AdminUser"), maxItems=50)}),
    "AdminLedgerEntry": obj({
        "id": integer(), "kind": string(enum=["grant", "deduct", "reserve", "settle", "refund", "shortfall"]),
        "delta": CREDITS, "delta_micro": MICRO, "balance_after": CREDITS, "request_id": nullable(UUID),
        "reason": string(), "actor": nullable(string("The email of the admin who made a grant or deduction.")),
        "created_at": DATETIME,
    }),
    "AdminUserDetail": obj({"user": ref("AdminUser"),
                            "ledger": array(ref("AdminLedgerEntry"), "The 100 newest entries.", maxItems=100)}),
    "PasswordResetLink": obj({
        "user_id": UUID, "email": string(),
        "expires_at": {**DATETIME, "description": "One hour after it was made; the link also ends once used or "
                                                  "when a newer link is made for the user."},
        "url": string("The link to give the user, /reset-password?token=...; this answer is its only copy."),
    }),
    "CreditAdjustment": obj({
        "amount": {"type": ["number", "string"],
                   "description": "Credits, non-zero, at most 1,000,000,000 and 6 decimals. Signed, unless "
                                  "`direction` is given (then positive)."},
        "reason": string("1 to 500 characters; kept in the ledger.", minLength=1, maxLength=500,
                         pattern=NOT_BLANK_NO_NUL),
        "direction": nullable(string(enum=["grant", "deduct", ""])),
    }, ["amount", "reason"], extra=True),
    "RequestLog": obj({
        "request_id": UUID, "user_id": UUID, "email": nullable(string()), "mode": string(enum=["member", "byok"]),
        "provider": nullable(string()), "model": nullable(string()), "task": nullable(string()),
        "key_source": nullable(string(enum=["admin_db", "admin_env", "byok_header", "byok_stored"])),
        "admin_key": nullable(obj({"id": UUID, "last4": string(maxLength=4), "label": string()})),
        "tokens_in": integer(), "tokens_out": integer(),
        "usage": nullable(string(enum=["measured", "estimated", "corrected"])), "credits": CREDITS,
        "credits_micro": MICRO,
        "multiplier": nullable(MULTIPLIER), "fallback_path": array(string(), "provider:outcome per attempt."),
        "stream": BOOL, "status": integer(), "error_code": nullable(string()), "latency_ms": integer(),
        "created_at": DATETIME,
        "api_key": nullable(obj({"id": UUID, "name": nullable(string()), "prefix": nullable(string())},
                                description="The personal API key the request came with (never the key).")),
        "cached_tokens": integer("Of tokens_in: read from the provider's cache (cached-input rate)."),
        "cache_write_tokens": integer("Of tokens_in: written to the provider's cache (cache-write rate)."),
        "reasoning_tokens": integer("Of tokens_out: hidden reasoning (output rate, counted once)."),
    }, description="One gateway request's receipt: no key and no prompt text."),
    "RequestLogPage": obj({
        "logs": array(ref("RequestLog")), "page": integer(minimum=1), "per_page": integer(minimum=1, maximum=200),
        "total": integer(minimum=0), "pages": integer(minimum=1),
        "total_exact": {"type": "boolean", "description": "False: more than `total` (10,000) rows match."},
        "next_cursor": nullable(string("Pass as `before` for the next (older) page; null on the last page.")),
        "prev_cursor": nullable(string("Pass as `after` for the previous (newer) page; null on the first.")),
        "filters": {"type": "object", "additionalProperties": {"type": "string"},
                    "description": "The non-empty filters as given."},
    }),
    "RequestLogEnvelope": obj({"log": ref("RequestLog")}),
    "Analytics": obj({
        "from": DATE, "to": DATE,
        "totals": obj({"requests": integer(), "errors": integer(),
                       "error_rate": {"type": "number", "minimum": 0, "maximum": 1}, **SPLIT_TOKENS}),
        "days": array(obj({"day": DATE, "requests": integer(), "tokens": integer(), "credits": CREDITS,
                           "credits_micro": MICRO, "errors": integer()}), "Every day of the range, oldest first."),
        "providers": array(obj({"provider": string("The provider slug, or `(none)`."), **_totals()})),
        "modes": obj({
            "member": obj(_totals()),
            "byok": obj({**_totals(), "member_equivalent_credits": {
                "allOf": [CREDITS], "description": "What the successful BYOK traffic would have cost in member "
                                                   "mode at today's prices."}}),
        }),
        "top_users": array(obj({"user_id": UUID, "email": nullable(string()), "requests": integer(),
                                "tokens": integer(), "credits": CREDITS}), maxItems=10),
        "error_codes": array(obj({"code": string(), "requests": integer()})),
        "shortfalls": obj({
            "requests": integer("Requests whose usage passed both the reservation and the balance."),
            "uncollected": CREDITS, "uncollected_micro": MICRO,
            "corrected_usage": integer("Requests whose upstream usage could not be true and was recounted."),
        }),
    }),
    "AuditEntry": obj({
        "id": integer(), "actor_id": nullable(UUID), "actor": nullable(string()),
        "action": string("Such as provider.update, key.add, key.rotate, key.revoke, credits.grant."),
        "target": string("Such as provider:openai or user:someone@example.com."),
        "before": {"description": "The state before the change (any JSON, null when nothing existed)."},
        "after": {"description": "The state after the change (any JSON, null when removed)."},
        "changes": array(obj({"field": string("Dotted for nested objects."), "before": nullable(string()),
                              "after": nullable(string())}),
                         "The same as a readable diff: one line per field that changed, values as text (null: "
                         "absent on that side)."),
        "created_at": DATETIME,
    }),
    "AuditPage": obj({"entries": array(ref("AuditEntry")), "page": integer(minimum=1),
                      "per_page": integer(minimum=1, maximum=200), "total": integer(minimum=0),
                      "pages": integer(minimum=1)}),
}

META_SCHEMAS: dict[str, Schema] = {
    "Health": obj({"status": string(enum=["ok"])}),
    "Readiness": obj({"status": string(enum=["ready", "unavailable"]), "database": string(enum=["up", "down"])}),
}

# -- responses and parameters -------------------------------------------------------------------------------------

RECEIPT_HEADERS: dict[str, Schema] = {
    "X-Request-Id": {"description": "The request's id, as in the admin request log.", "required": True,
                     "schema": UUID},
    "X-Switchboard-Mode": {"description": "`member` or `byok`.", "required": True,
                           "schema": string(enum=["member", "byok"])},
    "X-Switchboard-Provider": {"description": "The provider that answered.", "required": True, "schema": string()},
    "X-Switchboard-Model": {"description": "The model that answered.", "required": True, "schema": string()},
    "X-Switchboard-Key-Source": {"description": "`admin_db`, `admin_env`, `none` (local engine), "
                                 "`byok_header` or `byok_stored`.", "required": True, "schema": string()},
    "X-Switchboard-Multiplier": {"description": "The credit multiplier applied (0 in BYOK mode).",
                                 "required": True, "schema": MULTIPLIER},
    "X-Switchboard-Fallback": {"description": "Each attempt as provider:outcome, joined by ` > `.",
                               "required": True, "schema": string()},
    "X-Switchboard-Credits": {"description": "Credits charged (JSON answers only; a stream reports them in its "
                              "last chunk).", "schema": CREDITS},
    "X-Switchboard-Usage": {"description": "`measured` (the provider reported usage), `estimated` (none reported: "
                            "counted with tiktoken) or `corrected` (the reported numbers could not be true and were "
                            "replaced by the count). JSON answers only.",
                            "schema": string(enum=["measured", "estimated", "corrected"])},
    "X-Switchboard-Output-Limit": {"description": "Member mode: the output limit (tokens per choice) Switchboard "
                                   "wrote into the upstream request; the reservation pays for it.",
                                   "schema": string()},
    "X-Switchboard-Output-Limit-Reason": {"description": "Present when your balance (`balance`) or monthly cap "
                                          "(`monthly_cap`) lowered the output limit below the default.",
                                          "schema": string(enum=["balance", "monthly_cap"])},
    "X-Switchboard-Credits-Reserved": {"description": "Streams only: the credits reserved before forwarding "
                                       "(the worst case).", "schema": CREDITS},
}

RESPONSES: dict[str, Schema] = {
    "Unauthorized": _json(ref("ApiError"), "No bearer token, or it is not a valid Supabase access token "
                                           "(`missing_token`, `invalid_token`, `token_expired`) or personal API "
                                           "key (`invalid_api_key`, `api_key_revoked`, `api_key_expired`)."),
    "Forbidden": _json(ref("ApiError"), "The token is valid but not an admin's (`admin_required`), or it is a "
                                        "personal API key, which never has admin rights (`api_key_forbidden`)."),
    "NotFound": _json(ref("ApiError"), "No such resource."),
    "ValidationFailed": _json(ref("ApiValidationError"), "Some fields are not valid; `error.fields` says which."),
    "PayloadTooLarge": _json(ref("ApiError"), "The body is larger than MAX_BODY_BYTES."),
    "InvalidJSON": _json(ref("ApiError"), "The body is not JSON Switchboard accepts (`invalid_json`, before the "
                                          "token is checked): not UTF-8, malformed, nested deeper than 64 levels, "
                                          "NaN or Infinity, a number too large for a double, an integer over 1,000 "
                                          "digits, or a name twice in one object."),
    "AuthUnavailable": _json(ref("ApiError"), "The sign-in key service (JWKS) could not be reached to verify the "
                                              "token (`jwks_unavailable`)."),
    "V1Unauthorized": _json(ref("OpenAIError"), "No bearer token, or it is not a valid Supabase access token or "
                                                "personal API key (`invalid_api_key`, `api_key_revoked`, "
                                                "`api_key_expired`)."),
    "V1AuthUnavailable": _json(ref("OpenAIError"), "The sign-in key service (JWKS) could not be reached."),
}

RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before retrying (Switchboard's own limits; absent "
                                              "when the provider was the one rate limiting).",
                               "schema": string(pattern=r"^[0-9]+$")}}


def _param(name: str, where: str, schema: Schema, description: str, *, required: bool = False,
           **extra: Any) -> Schema:
    return {"name": name, "in": where, "required": required or where == "path",
            "description": description or schema.get("description", ""), "schema": schema, **extra}


PAGING = [
    _param("page", "query", or_empty(integer(minimum=1, maximum=1000000)), "Page number, 1 to 1,000,000 (1)."),
    _param("per_page", "query", or_empty(integer(minimum=1, maximum=200)), "Rows per page, 1 to 200 (50)."),
]
PATH_PROVIDER_ID = _param("provider_id", "path", UUID, "The provider's id.")
PATH_PROVIDER = _param("provider", "path", string(minLength=1, pattern="^[^/]+$"), "A provider slug.")


def _errors(*codes: str, v1: bool = False) -> dict[str, Schema]:
    table = {
        "400": _json(ref("OpenAIError" if v1 else "ApiError"), "Bad request."),
        "401": _resp("V1Unauthorized" if v1 else "Unauthorized"),
        "403": _resp("Forbidden"),
        "404": _resp("NotFound"),
        "409": _json(ref("ApiError"), "Conflict with the current state."),
        "413": _resp("PayloadTooLarge"),
        "422": _resp("ValidationFailed"),
        "503": _resp("V1AuthUnavailable" if v1 else "AuthUnavailable"),
    }
    return {code: table[code] for code in codes}


def _op(op_id: str, tag: str, summary: str, description: str, auth: str, responses: dict[str, Schema], *,
        parameters: list[Schema] | None = None, body: Schema | None = None) -> Schema:
    out: Schema = {"operationId": op_id, "tags": [tag], "summary": summary, "description": description,
                   "x-auth": auth}
    if auth == "none":
        out["security"] = []
    else:
        out["security"] = [{"bearerAuth": []}]
    if parameters:
        out["parameters"] = parameters
    if body is not None:
        out["requestBody"] = body
        if "400" not in responses:  # every JSON body is parsed strictly before the route runs (webapp.jsonbody)
            responses = {"400": _resp("InvalidJSON"), **responses}
    out["responses"] = responses
    return out


# -- operations ---------------------------------------------------------------------------------------------------

TAGS = [
    {"name": "OpenAI-compatible", "description": "Point an OpenAI SDK at `<host>/v1` with a Supabase access token "
                                                 "as the API key. Errors use OpenAI's shape (OpenAIError)."},
    {"name": "User", "description": "The signed-in user's settings, stored keys, usage, credits and quotes."},
    {"name": "Pricing", "description": "Public rates of the enabled providers; no token needed."},
    {"name": "Admin: providers", "description": "Provider presets, multipliers and admin keys. Admin token only."},
    {"name": "Admin: users", "description": "Members and their credits. Admin token only."},
    {"name": "Admin: reports", "description": "Request logs, analytics and the audit log. Admin token only."},
    {"name": "Meta", "description": "This document, its docs page, and the health probes."},
    {"name": "Teams", "description": "Teams: members and roles, invitations, the team wallet, per-member caps, "
                                     "team BYOK keys, routing and usage per member."},
    {"name": "Webhooks", "description": "Signed webhooks (Standard Webhooks): endpoints of your own, of a team "
                                        "(owners and admins) and of the site (admins), the signing secret, a test "
                                        "event and the delivery log."},
]


# X-Switchboard-Team (webapp/api/v1.py team_header): surrounding whitespace is ignored and empty means absent.
TEAM_HEADER = _param(
    "X-Switchboard-Team", "header", string(pattern=r"^\s*([a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?)?\s*$"),
    "The slug of a team to bill (its wallet, keys and routing; you must be a member). Without it: the API key's "
    "team, else your default team, else you. Not a slug: 400 `invalid_team`; not a member: 403 "
    "`not_a_team_member`; another team than a team-bound API key's: 403 `team_not_allowed`.")


def _v1_paths() -> dict[str, Schema]:
    chat_headers = [
        _param("X-Switchboard-Task", "header", string(minLength=1, maxLength=64, pattern=r"\S"),
               "A task name (1 to 64 characters) that selects a task override; wins over metadata.task."),
        _param("X-BYOK-API-Key", "header", string(),
               "Bring your own key for this one request (not stored). Needs a provider: X-BYOK-Provider or a "
               "`provider/model` name. Empty: as if absent."),
        _param("X-BYOK-Provider", "header", string(),
               "The provider slug the X-BYOK-API-Key is for. Needs X-BYOK-API-Key."),
        _param("X-BYOK-Base-URL", "header", string(pattern=r"^(\s*https?://.*)?$"),
               "An http(s) base URL for X-BYOK-API-Key, for providers that allow a custom one. Private, loopback "
               "and link-local addresses are refused. Needs X-BYOK-API-Key."),
        TEAM_HEADER,
    ]
    v1_error = functools.partial(_json, ref("OpenAIError"))
    chat = _op(
        "createChatCompletion", "OpenAI-compatible", "Create a chat completion",
        "Routes the request by the user's mode, task overrides and provider priorities, reserves credits for the "
        "worst case in member mode, forwards with fallback and settles on the real usage. Every answer carries a "
        "receipt in the X-Switchboard-* headers; a stream also ends with a chunk holding `usage` and a "
        "`switchboard` receipt when stream_options.include_usage is true.",
        "user",
        {
            "200": {
                "description": "The completion (JSON), or with `stream: true` a text/event-stream of "
                               "`data: {chat.completion.chunk}` events ending with `data: [DONE]`.",
                "headers": RECEIPT_HEADERS,
                "content": {
                    "application/json": {"schema": ref("ChatCompletion")},
                    "text/event-stream": {"schema": ref("ChatCompletionEvent")},
                },
            },
            "400": v1_error("The body is not JSON or not a valid chat request (`invalid_json`, `invalid_value`), a "
                            "BYOK header is incomplete or invalid, the base URL is private, or the provider "
                            "rejected the request or (BYOK) the key."),
            "401": _resp("V1Unauthorized"),
            "402": v1_error("Not enough credits for the worst case (`insufficient_credits`), the monthly cap would "
                            "be passed (`monthly_cap_reached`), or the settings forbid spending credits "
                            "(`credits_disabled`)."),
            "403": v1_error("BYOK is not allowed for this provider, or it does not accept a custom base URL."),
            "404": v1_error("No enabled provider serves the model (`model_not_found`), member mode does not offer "
                            "it (`model_not_available`), or the provider answered 404."),
            "413": v1_error("The body is larger than MAX_BODY_BYTES."),
            "429": {**v1_error("Too many requests a minute (`rate_limited`), too many streams at once "
                               "(`too_many_streams`), or the provider is rate limiting (`upstream_rate_limited`)."),
                    "headers": RETRY_AFTER},
            "502": v1_error("The provider could not be reached (`upstream_unreachable`), failed "
                            "(`upstream_error`), or refused the admin key (`upstream_auth_failed`). A loopback "
                            "preset (LM Studio, Ollama) with nothing listening answers this way."),
            "503": _resp("V1AuthUnavailable"),
            "504": v1_error("The provider did not answer in time (`upstream_timeout`)."),
        },
        parameters=chat_headers,
        body=_body(ref("ChatCompletionRequest"), "An OpenAI chat-completions request."),
    )
    team_errors = {"400": v1_error("X-Switchboard-Team is not a team slug (`invalid_team`)."),
                   "403": v1_error("Not a member of the team billed (`not_a_team_member`), or a team-bound API key "
                                   "names another (`team_not_allowed`).")}
    models = _op("listModels", "OpenAI-compatible", "List the models you can call",
                 "In member mode: models of enabled providers that have an admin key (or are local engines). In "
                 "BYOK mode: models of providers you stored a key for. Billed to a team: with the team's keys.",
                 "user", {"200": _json(ref("ModelList"), "The models."), **team_errors,
                          **_errors("401", "503", v1=True)}, parameters=[TEAM_HEADER])
    model = _op("retrieveModel", "OpenAI-compatible", "Retrieve one model you can call",
                "A `provider/model` id as listed by /v1/models (the id contains a slash), or a bare model id that "
                "a listed provider offers. Extra or doubled slashes are read as the canonical path.", "user",
                {"200": _json(ref("Model"), "The model."),
                 "404": v1_error("You cannot call this model now (`model_not_found`)."), **team_errors,
                 **_errors("401", "503", v1=True)},
                parameters=[_param("model_id", "path", string(minLength=1, maxLength=400),
                                   "`provider/model` or a bare model id."), TEAM_HEADER])
    return {"/v1/chat/completions": {"post": chat}, "/v1/models": {"get": models},
            "/v1/models/{model_id}": {"get": model}, **_v1_declared_paths(chat, chat_headers),
            **_messages_paths(chat_headers)}


def _messages_paths(chat_headers: list[Schema]) -> dict[str, Schema]:
    from webapp.services import openapi_messages  # Anthropic's Messages API; it builds on this module's helpers

    return openapi_messages.paths(chat_headers)


def _v1_declared_paths(chat: Schema, headers: list[Schema]) -> dict[str, Schema]:
    """/v1/responses and /v1/embeddings: bodies from webapp/api/schemas; the chat route's guarantees and errors."""
    v1_error = functools.partial(_json, ref("OpenAIError"))
    errors = {k: v for k, v in chat["responses"].items() if k != "200"}
    responses = _op(
        "createResponse", "OpenAI-compatible", "Create a model response (Responses API)",
        "The chat route's routing, modes, credits, limits and receipts. Passed through to a provider whose preset "
        "speaks the Responses API; translated to a chat completion for any other (Anthropic included): text, "
        "images, function tools, `text.format` json_schema. Translating refuses what it cannot carry by name (400 "
        "`unsupported_parameter`: `previous_response_id`, built-in tools, files, reasoning items, unknown fields), "
        "never dropping it. A stream is Responses' typed events, each with a `sequence_number`; "
        "response.completed carries the charged usage and the `switchboard` receipt.",
        "user",
        {"200": {"description": "The response (JSON), or with `stream: true` a text/event-stream of typed events "
                               "(`event: <type>` and `data: {json}`).",
                 "headers": RECEIPT_HEADERS,
                 "content": {"application/json": {"schema": ref("ResponseObject")},
                             "text/event-stream": {"schema": ref("ResponseEvent")}}},
         **errors,
         "400": v1_error("Not a valid request (`invalid_value` naming the field), a part the route's provider "
                         "cannot take (`unsupported_parameter`), or as for chat completions.")},
        parameters=headers,
        body=_body(ref("ResponsesRequest"), "An OpenAI Responses API request."),
    )
    embeddings = _op(
        "createEmbeddings", "OpenAI-compatible", "Create embeddings",
        "Member mode reserves the counted input tokens at the model's input rate x multiplier and settles on the "
        "provider's count; BYOK spends no credits. Providers speaking the OpenAI wire format serve embeddings "
        "(the OpenAI, Google Gemini, Mistral and Ollama presets list embedding models); the model must be an "
        "embedding model (`kind` in the admin's rates) when Switchboard knows it.",
        "user",
        {"200": {"description": "The embeddings.", "headers": RECEIPT_HEADERS,
                 "content": {"application/json": {"schema": ref("EmbeddingList")}}},
         **errors,
         "400": v1_error("Not a valid request (`invalid_value` naming the field), not an embedding model "
                         "(`model_not_embedding`), or as for chat completions.")},
        parameters=headers,
        body=_body(ref("EmbeddingsRequest"), "An OpenAI embeddings request."),
    )
    stored_params = [_param("response_id", "path", string(minLength=1, maxLength=200, pattern="^[A-Za-z0-9_-]+$"),
                            "The provider's response id (`resp_...`)."), *headers[1:]]
    stored_errors = {"400": v1_error("The provider refused your key (`upstream_auth_failed`) or a BYOK header is "
                                     "incomplete or invalid."),
                     "404": v1_error("No BYOK headers (Switchboard keeps no responses), a provider that keeps none, "
                                     "or no such response there (`response_not_found`)."),
                     "502": v1_error("The provider could not be asked (`upstream_error`)."),
                     **{k: v for k, v in errors.items() if k in ("401", "403", "503")}}
    stored = {
        "get": _op("getStoredResponse", "OpenAI-compatible", "Read a response the provider keeps",
                   "With your own key only (X-BYOK-API-Key and X-BYOK-Provider naming a preset that speaks the "
                   "Responses API): the provider's stored response, as it answers it. Switchboard keeps none.",
                   "user", {"200": _json(ref("ResponseObject"), "The stored response."), **stored_errors},
                   parameters=stored_params),
        "delete": _op("deleteStoredResponse", "OpenAI-compatible", "Delete a response the provider keeps",
                      "With your own key only, as for reading it.", "user",
                      {"200": _json({"type": "object", "description": "The provider's answer (`deleted: true`)."},
                                    "Deleted."), **stored_errors},
                      parameters=stored_params),
    }
    return {"/v1/responses": {"post": responses}, "/v1/embeddings": {"post": embeddings},
            "/v1/responses/{response_id}": stored}


def _user_paths() -> dict[str, Schema]:
    tag = "User"
    auth_errors = ("401", "503")
    return {
        "/api/user/settings": {
            "get": _op("getUserSettings", tag, "Read your settings", "Defaults when you never saved any.", "user",
                       {"200": _json(ref("UserSettingsEnvelope"), "Your settings."), **_errors(*auth_errors)}),
            "put": _op("updateUserSettings", tag, "Change your settings",
                       "Validated like the settings page; only the fields sent change.", "user",
                       {"200": _json(ref("UserSettingsEnvelope"), "The settings after the change."),
                        **_errors(*auth_errors, "413", "422")},
                       body=_body(ref("UserSettingsUpdate"), "The fields to change.")),
        },
        "/api/user/llm/keys": {
            "get": _op("listUserKeys", tag, "List your stored provider keys", "Masked: the last four characters.",
                       "user", {"200": _json(ref("UserKeyList"), "Your keys."), **_errors(*auth_errors)}),
        },
        "/api/user/llm/keys/{provider}": {
            "parameters": [PATH_PROVIDER],
            "put": _op("putUserKey", tag, "Store (or replace) your key for a provider",
                       "Encrypted with AES-256-GCM and bound to you and the provider. A cheap models-list call then "
                       "tests it; its outcome is reported in `check`, never a reason to refuse the save.", "user",
                       {"200": _json(ref("UserKeySaved"), "The key as stored, and the test's outcome."),
                        "403": _json(ref("ApiError"), "The provider does not accept your own key "
                                                      "(`byok_not_allowed`)."),
                        "404": _json(ref("ApiError"), "No enabled provider with this slug (`provider_not_found`)."),
                        **_errors(*auth_errors, "413", "422")},
                       body=_body(ref("UserKeyPut"), "The key and, where allowed, a base URL.")),
            "delete": _op("deleteUserKey", tag, "Remove your key for a provider", "", "user",
                          {"204": {"description": "Removed."},
                           "404": _json(ref("ApiError"), "No such provider (`provider_not_found`) or no stored key "
                                                         "(`key_not_found`)."),
                           **_errors(*auth_errors)}),
        },
        "/api/user/llm/usage": {
            "get": _op("getUserUsage", tag, "Your usage totals and recent requests",
                       "Totals per group over a date range (inclusive, UTC, at most 366 days; the last 30 days by "
                       "default), and your 50 most recent requests.", "user",
                       {"200": _json(ref("UsageSummary"), "The totals."), **_errors(*auth_errors, "422")},
                       parameters=[
                           _param("from", "query", or_empty(DATE), "First day (default: 29 days before `to`)."),
                           _param("to", "query", or_empty(DATE), "Last day (default: today, UTC)."),
                           _param("group_by", "query",
                                  or_empty(array(string(enum=["day", "provider", "model", "mode", "api_key", "team",
                                                              ""]))),
                                  "Comma-separated groups (default: day,provider); empty items are ignored. "
                                  "`api_key` groups by personal API key (null: requests made without one); "
                                  "`team` by the team billed (null: personal).",
                                  style="form", explode=False),
                           _param("api_key", "query", or_empty(UUID),
                                  "Only requests made with this personal API key (its id)."),
                       ]),
        },
        "/api/user/credits": {
            "get": _op("getUserCredits", tag, "Your balance and ledger", "", "user",
                       {"200": _json(ref("CreditsSummary"), "Balance and the 50 newest ledger entries."),
                        **_errors(*auth_errors)}),
        },
        "/api/user/llm/quote": {
            "post": _op("quotePrompt", tag, "Price a prompt on every route open to you",
                        "Counts the prompt's tokens per model and prices prompt + max_tokens on each member route; "
                        "BYOK routes cost no credits. With X-Switchboard-Team: as a request billed to that team "
                        "(its routing and keys; not a member: 403 `not_a_team_member`); without it: your own "
                        "settings and keys.", "user",
                        {"200": _json(ref("Quote"), "One entry per route."),
                         "402": _json(ref("ApiError"), "With `model`: your settings forbid spending credits "
                                                       "(`credits_disabled`), as the gateway would answer."),
                         **_errors(*auth_errors, "403", "404", "413", "422"),
                         "400": _json(ref("ApiError"), "With `model`: the gateway would refuse it "
                                                       "(`byok_key_missing`), the body is not JSON it accepts, or "
                                                       "X-Switchboard-Team is not a slug (`invalid_team`).")},
                        parameters=[TEAM_HEADER],
                        body=_body(ref("QuoteRequest"), "The prompt to price.")),
        },
    }


def _pricing_paths() -> dict[str, Schema]:
    return {"/api/pricing/providers": {"get": _op(
        "listPublicProviders", "Pricing", "Enabled providers and their rates",
        "Public: multipliers and per-1K-token rates in credits. No token needed.", "none",
        {"200": _json(ref("PublicProviderList"), "The enabled providers.")})}}


def _admin_paths() -> dict[str, Schema]:
    admin_errors = ("401", "403", "503")
    prov, users, reports = "Admin: providers", "Admin: users", "Admin: reports"
    provider_404 = _json(ref("ApiError"), "No such provider (`provider_not_found`).")
    provider_links = {
        "UpdateProvider": {"operationId": "adminUpdateProvider",
                           "parameters": {"provider_id": "$response.body#/providers/0/id"}},
        "AddKey": {"operationId": "adminAddKey", "parameters": {"provider_id": "$response.body#/providers/0/id"}},
        "EnableProvider": {"operationId": "adminEnableProvider",
                           "parameters": {"provider_id": "$response.body#/providers/0/id"}},
        "SetMultiplier": {"operationId": "adminSetMultiplier",
                          "parameters": {"provider_id": "$response.body#/providers/0/id"}},
    }
    provider_envelope = _json(ref("AdminProviderEnvelope"), "The provider after the change.")
    return {
        "/api/admin/llm/providers": {
            "get": _op("adminListProviders", prov, "Every provider preset",
                       "Enabled or not, with model rates, masked keys and where member mode gets its key.", "admin",
                       {"200": {**_json(ref("AdminProviderList"), "The presets."), "links": provider_links},
                        **_errors(*admin_errors)}),
            "post": _op("adminCreateProvider", prov, "Create a provider",
                        "Name, slug, wire style, base URL and any other field; no models or key yet (fetch or add "
                        "them next). Audited.", "admin",
                        {"201": _json(ref("AdminProviderEnvelope"), "The new provider."),
                         **_errors(*admin_errors, "413", "422")},
                        body=_body(ref("ProviderCreate"), "The new provider.")),
        },
        "/api/admin/llm/providers/{provider_id}": {
            "parameters": [PATH_PROVIDER_ID],
            "put": _op("adminUpdateProvider", prov, "Change a provider preset",
                       "Any editable field; with `models`, the complete new list of model rates. Audited.", "admin",
                       {"200": provider_envelope, "404": provider_404, **_errors(*admin_errors, "409", "413", "422")},
                       body=_body(ref("ProviderUpdate"), "The fields to change.")),
            "patch": _op("adminPatchProvider", prov, "Change some fields of a provider",
                         "The same as PUT: only the fields sent change. A retired provider is a 409 "
                         "(`provider_archived`). Audited.", "admin",
                         {"200": provider_envelope, "404": provider_404,
                          "409": _json(ref("ApiError"), "The provider was retired (`provider_archived`)."),
                          **_errors(*admin_errors, "413", "422")},
                         body=_body(ref("ProviderUpdate"), "The fields to change.")),
            "delete": _op("adminRetireProvider", prov, "Retire a provider",
                          "With history (a request log names it) it is archived: disabled for good, hidden from "
                          "users, /v1/models and routing, while logs, receipts and analytics keep its name. Without "
                          "history it is deleted. Users' default provider, priorities and task overrides naming it "
                          "are removed and each affected user gets a notice. Audited.", "admin",
                          {"200": _json(ref("ProviderRetired"), "What happened."), "404": provider_404,
                           "409": _json(ref("ApiError"), "Already retired (`provider_archived`)."),
                           **_errors(*admin_errors)}),
        },
        "/api/admin/llm/providers/{provider_id}/models/fetch": {
            "parameters": [PATH_PROVIDER_ID],
            "post": _op("adminFetchModels", prov, "List the provider's models upstream",
                        "Calls the provider's own model list with the admin key and its extra headers "
                        "(OpenAI-style GET {base}/models; Anthropic GET {base}/models with x-api-key and "
                        "anthropic-version), 10 s timeout, 4 MB cap, at most 2,000 valid ids. Stores nothing.",
                        "admin",
                        {"200": _json(ref("FetchedModels"), "The ids listed."), "404": provider_404,
                         "409": _json(ref("ApiError"), "The provider was retired (`provider_archived`)."),
                         "502": _json(ref("ApiError"), "The upstream did not list its models "
                                                       "(`model_list_failed`)."),
                         **_errors(*admin_errors, "422")}),
        },
        "/api/admin/llm/providers/{provider_id}/models": {
            "parameters": [PATH_PROVIDER_ID],
            "post": _op("adminAddModels", prov, "Offer several models at once",
                        "The same rates for each; models already offered keep theirs. The first model of a provider "
                        "without a default model becomes its default. Audited.", "admin",
                        {"200": provider_envelope, "404": provider_404,
                         "409": _json(ref("ApiError"), "The provider was retired (`provider_archived`)."),
                         **_errors(*admin_errors, "413", "422")},
                        body=_body(ref("ModelsAdd"), "The models and their rates.")),
            "patch": _op("adminBulkEditModels", prov, "Set one field of several models",
                         "Rates, limits or enabled (a disabled model is neither offered nor routed). Audited.",
                         "admin",
                         {"200": provider_envelope, "404": provider_404,
                          "409": _json(ref("ApiError"), "The provider was retired (`provider_archived`)."),
                          **_errors(*admin_errors, "413", "422")},
                         body=_body(ref("ModelsBulkEdit"), "The models, the field and its value.")),
        },
        "/api/admin/llm/providers/{provider_id}/keys": {
            "parameters": [PATH_PROVIDER_ID],
            "post": _op("adminAddKey", prov, "Add (or rotate in) an admin key",
                        "Stored encrypted and bound to the provider; with `rotate`, the other active keys stop "
                        "serving. Tested after the save with a models-list call. Audited.", "admin",
                        {"201": {**_json(ref("AdminKeySaved"), "The key as stored."),
                                 "links": {"RevokeKey": {"operationId": "adminRevokeKey", "parameters": {
                                     "provider_id": "$response.body#/provider/id",
                                     "key_id": "$response.body#/key/id"}}}},
                         "404": provider_404, **_errors(*admin_errors, "409", "413", "422")},
                        body=_body(ref("AdminKeyCreate"), "The key.")),
        },
        "/api/admin/llm/providers/{provider_id}/keys/{key_id}": {
            "parameters": [PATH_PROVIDER_ID, _param("key_id", "path", UUID, "The admin key's id.")],
            "delete": _op("adminRevokeKey", prov, "Revoke an admin key",
                          "It never serves again; the row stays so old request logs keep naming it. Audited.",
                          "admin",
                          {"200": _json(ref("AdminProviderEnvelope"), "The provider after the revocation."),
                           "404": _json(ref("ApiError"), "The provider has no such key (`key_not_found`)."),
                           "409": _json(ref("ApiError"), "The key is already revoked (`key_already_revoked`)."),
                           **_errors(*admin_errors)}),
        },
        "/api/admin/settings/providers": {
            "get": _op("adminProviderSettings", prov, "Providers with their multiplier bounds",
                       "The settings view: the same presets plus MULTIPLIER_MIN/MAX.", "admin",
                       {"200": _json(ref("AdminProviderSettings"), "The presets and bounds."),
                        **_errors(*admin_errors)}),
        },
        "/api/admin/settings/providers/{provider_id}/enable": {
            "parameters": [PATH_PROVIDER_ID],
            "put": _op("adminEnableProvider", prov, "Enable or disable a provider", "Audited.", "admin",
                       {"200": provider_envelope, "404": provider_404, **_errors(*admin_errors, "409", "413", "422")},
                       body=_body(ref("EnabledUpdate"), "{\"enabled\": true|false}")),
        },
        "/api/admin/settings/providers/{provider_id}/multiplier": {
            "parameters": [PATH_PROVIDER_ID],
            "put": _op("adminSetMultiplier", prov, "Set a provider's credit multiplier", "Audited.", "admin",
                       {"200": provider_envelope, "404": provider_404, **_errors(*admin_errors, "409", "413", "422")},
                       body=_body(ref("MultiplierUpdate"), "{\"multiplier\": 1.5}")),
        },
        "/api/admin/users": {
            "get": _op("adminSearchUsers", users, "Find users by email",
                       "Users whose email contains `q` (the newest 50 when it is empty), with their balances.",
                       "admin",
                       {"200": {**_json(ref("AdminUserSearch"), "Up to 50 users."), "links": {
                           "UserDetail": {"operationId": "adminUserDetail",
                                          "parameters": {"user_id": "$response.body#/users/0/id"}},
                           "AdjustCredits": {"operationId": "adminAdjustCredits",
                                             "parameters": {"user_id": "$response.body#/users/0/id"}}}},
                        **_errors(*admin_errors, "422")},
                       parameters=[_param("q", "query", string(pattern=NO_NUL),
                                          "Part of an email (trimmed, at most 200 characters used).")]),
        },
        "/api/admin/users/{user_id}": {
            "parameters": [_param("user_id", "path", UUID, "The user's id.")],
            "get": _op("adminUserDetail", users, "A user's balance and ledger", "", "admin",
                       {"200": _json(ref("AdminUserDetail"), "The user and the 100 newest ledger entries."),
                        "404": _json(ref("ApiError"), "No such user (`user_not_found`)."),
                        **_errors(*admin_errors)}),
        },
        "/api/admin/users/{user_id}/credits": {
            "parameters": [_param("user_id", "path", UUID, "The user's id.")],
            "post": _op("adminAdjustCredits", users, "Grant or deduct credits",
                        "Through the ledger; a deduction never takes the balance below zero. Audited.", "admin",
                        {"200": _json(ref("AdminUserDetail"), "The user after the change."),
                         "404": _json(ref("ApiError"), "No such user (`user_not_found`)."),
                         **_errors(*admin_errors, "413", "422")},
                        body=_body(ref("CreditAdjustment"), "The amount and why.")),
        },
        "/api/admin/users/{user_id}/password-reset": {
            "parameters": [_param("user_id", "path", UUID, "The user's id.")],
            "post": _op("adminCreatePasswordResetLink", users, "Create a one-time password reset link",
                        "For a user who forgot their password (local sign-in backend): the link lets them choose a "
                        "new one, once, within an hour, and signs them out everywhere. A new link ends the older "
                        "ones. Only a keyed hash of the token is stored. Audited (`user.password_reset_link`).",
                        "admin",
                        {"201": _json(ref("PasswordResetLink"), "The link, shown once."),
                         "404": _json(ref("ApiError"), "No such user (`user_not_found`)."),
                         "409": _json(ref("ApiError"), "Sign-in is Supabase's, which sends its own recovery "
                                                        "email (`reset_links_local_only`)."),
                         **_errors(*admin_errors)}),
        },
        "/api/admin/logs": {
            "get": _op("adminListLogs", reports, "Request logs", "Newest first, filtered and paginated.", "admin",
                       {"200": {**_json(ref("RequestLogPage"), "One page of logs."), "links": {
                           "Receipt": {"operationId": "adminGetLog",
                                       "parameters": {"request_id": "$response.body#/logs/0/request_id"}}}},
                        **_errors(*admin_errors, "422")},
                       parameters=[
                           _param("user", "query", filter_param(r"[^\x00]{0,200}", "A user id, or part of an "
                                                                "email (at most 200 characters)."), ""),
                           _param("provider", "query", filter_param(PROVIDER_SLUG_PATTERN[1:-1], "A provider slug."),
                                  ""),
                           _param("mode", "query", filter_param("member|byok", "member or byok."), ""),
                           _param("status", "query", filter_param("ok|error|[1-5][0-9][0-9]",
                                                                  "ok (< 400), error (>= 400) or an HTTP status."),
                                  ""),
                           _param("from", "query", filter_param(DATE_CORE, "First day (inclusive), such as "
                                                                           "2026-11-23."), ""),
                           _param("to", "query", filter_param(DATE_CORE, "Last day (inclusive)."), ""),
                           _param("api_key", "query", filter_param(
                               "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}",
                               "Requests made with this personal API key (its id)."), ""),
                           *PAGING,
                           _param("before", "query", filter_param("[A-Za-z0-9_-]{1,120}", "A page cursor"
                                                                  " (next_cursor): the rows older than it."), ""),
                           _param("after", "query", filter_param("[A-Za-z0-9_-]{1,120}", "A page cursor"
                                                                 " (prev_cursor): the rows newer than it."), ""),
                       ]),
        },
        "/api/admin/logs/{request_id}": {
            "parameters": [_param("request_id", "path", UUID, "The request id (X-Request-Id).")],
            "get": _op("adminGetLog", reports, "One request's receipt", "", "admin",
                       {"200": _json(ref("RequestLogEnvelope"), "The receipt."),
                        "404": _json(ref("ApiError"), "No request with that id (`request_not_found`)."),
                        **_errors(*admin_errors)}),
        },
        "/api/admin/usage": {
            "get": _op("adminAnalytics", reports, "Usage analytics",
                       "Requests, tokens and credits per day and provider, member vs BYOK, top users and error "
                       "codes over a date range (inclusive, UTC, at most 366 days; the last 30 by default).",
                       "admin",
                       {"200": _json(ref("Analytics"), "The analytics."), **_errors(*admin_errors, "422")},
                       parameters=[_param("from", "query", filter_param(DATE_CORE, "First day, such as "
                                                                                   "2026-11-23."), ""),
                                   _param("to", "query", filter_param(DATE_CORE, "Last day."), "")]),
        },
        "/api/admin/audit": {
            "get": _op("adminAudit", reports, "The audit log", "Every admin change, newest first.", "admin",
                       {"200": _json(ref("AuditPage"), "One page of entries."), **_errors(*admin_errors, "422")},
                       parameters=[
                           _param("action", "query", filter_param("[a-z_.]{0,80}", "An action or its prefix, "
                                                                                   "such as `provider` or "
                                                                                   "`key.revoke`."), ""),
                           *PAGING,
                       ]),
        },
    }


def _meta_paths() -> dict[str, Schema]:
    return {
        "/api/openapi.json": {"get": _op(
            "getOpenApiDocument", "Meta", "This OpenAPI 3.1 document", "", "none",
            {"200": _json({"type": "object", "required": ["openapi", "info", "paths"]}, "The document.")})},
        "/api/docs": {"get": _op(
            "getApiDocs", "Meta", "Readable docs rendered from this document",
            "Server-rendered HTML: every operation grouped by tag, with its auth, parameters and schemas.", "none",
            {"200": {"description": "The docs page.", "content": {"text/html": {"schema": string()}}}})},
        "/healthz": {"get": _op("healthz", "Meta", "Liveness probe", "The process answers.", "none",
                                {"200": _json(ref("Health"), "Alive.")})},
        "/readyz": {"get": _op("readyz", "Meta", "Readiness probe", "The database answers.", "none",
                               {"200": _json(ref("Readiness"), "Ready."),
                                "503": _json(ref("Readiness"), "The database does not answer.")})},
    }


INFO_DESCRIPTION = """\
Switchboard serves OpenAI-compatible chat completions over many providers, in **member** mode (credits, admin \
keys) or **BYOK** mode (your own keys), plus JSON APIs for settings, usage, pricing and administration.

**Authentication.** Send a Supabase access token (a JWT, as issued at sign-in) as `Authorization: Bearer <token>`. \
Admin operations need a token whose `app_metadata.role` is `admin`. With an OpenAI SDK, use the token as the API \
key and `<host>/v1` as the base URL. A **personal API key** (`sb_...`, created with `POST /api/user/api-keys`) is \
accepted wherever a user token is (`/v1/*`, `/api/user/*`; also as `X-Api-Key`), runs as its owner within its \
limits, and is refused on admin operations and on key management (`api_key_forbidden`).

**Errors.** Under `/api` every error is `{"error": {"code", "message", ...}}` (ApiError); validation failures are \
422 with `error.fields`. Under `/v1` errors use OpenAI's shape `{"error": {"message", "type", "param", "code"}}` \
(OpenAIError). No error body ever holds a stack trace or a secret.

**Receipts.** Every chat completion carries `X-Request-Id` and `X-Switchboard-*` headers saying which provider, \
model, key source and multiplier served it and what it cost."""


# -- personal API keys --------------------------------------------------------------------------------------------

_KEY_FIELDS: dict[str, Schema] = {
    "name": string("1 to 100 printable characters.", minLength=1, maxLength=100),
    "expires_at": nullable(string("When the key stops working: a date (midnight UTC) or an ISO 8601 time, in the "
                                  "future and at most 10 years away. Null or empty: never.", maxLength=40)),
    "monthly_credit_cap": nullable(string("Credits this key may spend per calendar month (UTC), 0 to "
                                          "1,000,000,000 and at most your own monthly cap. Null or empty: none.",
                                          pattern=r"^[0-9]{0,10}(\.[0-9]{0,6})?$", maxLength=17)),
    "allow": nullable(array(string("A provider slug (`openai`) or `provider/model` from the catalog.", minLength=1,
                                   maxLength=300), "The only providers/models the key may call (fallbacks "
                            "included); empty or null: everything you may call.", maxItems=100)),
    "mode": string("`user`: your mode at the time of the request; `member` or `byok`: only that mode.",
                   enum=["user", "member", "byok"]),
}

API_KEY_SCHEMAS: dict[str, Schema] = {
    "ApiKey": obj({
        "id": UUID, "name": string(),
        "prefix": string("The key's public id (after `sb_`).", pattern="^[0-9A-Za-z]{12}$"),
        "hint": string("How the key starts: `sb_<prefix>_…`."), "mode": string(enum=["user", "member", "byok"]),
        "allow": array(string()), "status": string(enum=["active", "expired", "revoked"]),
        "monthly_credit_cap": nullable(CREDITS), "expires_at": nullable(DATETIME), "revoked_at": nullable(DATETIME),
        "last_used_at": nullable(DATETIME), "created_at": DATETIME,
        "month": obj({"requests": integer(), "credits": CREDITS, "credits_micro": MICRO},
                     description="This calendar month (UTC) so far."),
    }, description="A personal API key as its owner (or an admin) sees it: never the key, never its hash."),
    "ApiKeyList": obj({"api_keys": array(ref("ApiKey"))}),
    "ApiKeyEnvelope": obj({"api_key": ref("ApiKey")}),
    "ApiKeyCreated": obj({
        "api_key": ref("ApiKey"),
        "secret": string("The key: shown this once, never again.", pattern="^sb_[0-9A-Za-z]{12}_[0-9A-Za-z]{43}$"),
        "warning": string(),
    }),
    "ApiKeyCreate": obj(dict(_KEY_FIELDS), ["name"]),
    "ApiKeyUpdate": obj(dict(_KEY_FIELDS), [], description="Only the fields sent change."),
}


def _api_key_paths() -> dict[str, Schema]:
    tag, errs = "User", ("401", "503")
    forbidden = _json(ref("ApiError"), "Sent with a personal API key (`api_key_forbidden`): keys are managed with "
                                       "a session or a Supabase access token only.")
    not_found = _json(ref("ApiError"), "None of your keys has this id (`api_key_not_found`).")
    key_id = _param("key_id", "path", UUID, "The key's id.")
    return {
        "/api/user/api-keys": {
            "get": _op("listApiKeys", tag, "List your personal API keys",
                       "Live keys (revoked ones are kept for the logs, not listed), with this month's requests "
                       "and credits.", "user",
                       {"200": _json(ref("ApiKeyList"), "Your keys."), "403": forbidden, **_errors(*errs)}),
            "post": _op("createApiKey", tag, "Create a personal API key",
                        "Returns the key once (`secret`); only a keyed hash is stored. Use it as "
                        "`Authorization: Bearer sb_...` (or `X-Api-Key`) on /v1 and /api/user. At most 50 live "
                        "keys.", "user",
                        {"201": _json(ref("ApiKeyCreated"), "The new key and its secret."), "403": forbidden,
                         **_errors(*errs, "413", "422")},
                        body=_body(ref("ApiKeyCreate"), "Name and optional restrictions.")),
        },
        "/api/user/api-keys/{key_id}": {
            "parameters": [key_id],
            "patch": _op("updateApiKey", tag, "Change a key's name or restrictions",
                         "Takes effect on the key's next request.", "user",
                         {"200": _json(ref("ApiKeyEnvelope"), "The key after the change."), "403": forbidden,
                          "404": not_found, **_errors(*errs, "413", "422")},
                         body=_body(ref("ApiKeyUpdate"), "The fields to change.")),
            "delete": _op("revokeApiKey", tag, "Revoke a key",
                          "Refused from its next request on, in every worker. Idempotent.", "user",
                          {"200": _json(ref("ApiKeyEnvelope"), "The revoked key."), "403": forbidden,
                           "404": not_found, **_errors(*errs)}),
        },
        "/api/admin/users/{user_id}/api-keys": {
            "parameters": [_param("user_id", "path", UUID, "The user's id.")],
            "get": _op("adminListUserApiKeys", "Admin: users", "A user's personal API keys",
                       "Revoked ones included. No key or hash is ever shown.", "admin",
                       {"200": _json(ref("ApiKeyList"), "The keys (empty for an unknown user)."),
                        **_errors("401", "403", "404", "503")}),
        },
        "/api/admin/api-keys/{key_id}": {
            "parameters": [key_id],
            "delete": _op("adminRevokeApiKey", "Admin: users", "Revoke any user's personal API key",
                          "Audited (`api_key.revoke`); refused from its next request on.", "admin",
                          {"200": _json(ref("ApiKeyEnvelope"), "The revoked key."),
                           "404": _json(ref("ApiError"), "No such key (`api_key_not_found`)."),
                           **_errors("401", "403", "503")}),
        },
    }


# -- credits a user can follow (ledger pages, receipts) and the admin's credit settings ---------------------------

AMOUNT_IN: Schema = {"type": ["number", "string"],
                     "description": "A decimal with at most 6 decimal places, from 0 to 1,000,000,000."}
CREDIT_SCHEMAS: dict[str, Schema] = {
    "UserLedgerEntry": obj({
        "id": integer("The cursor: pass the last one as `before` for the next page."),
        "kind": string(enum=["grant", "deduct", "reserve", "settle", "refund", "shortfall"],
                       description="grant/deduct: by an admin or the sign-up grant; reserve: credits held for a "
                                   "request; settle: the unused part returned (or the extra charged); refund: a "
                                   "failed request's hold returned; shortfall: usage that could not be collected "
                                   "(delta 0)."),
        "delta": CREDITS, "delta_micro": MICRO, "balance_after": CREDITS, "balance_after_micro": MICRO,
        "request_id": nullable(UUID), "reason": string(), "uncollected": nullable(CREDITS), "created_at": DATETIME,
    }),
    "LedgerPage": obj({
        "entries": array(ref("UserLedgerEntry"), "Newest first.", maxItems=100),
        "next_before": nullable(integer("Pass as `before` for the next (older) page; null on the last page.")),
    }),
    "UserReceipt": obj({
        "request_id": UUID,
        "state": string(enum=["settled", "refunded", "reserved", "logged"],
                        description="settled or refunded: a member request's outcome; reserved: in flight, its "
                                    "credits held; logged: a request that reserved nothing (BYOK, or refused before "
                                    "reserving)."),
        "created_at": nullable(DATETIME), "mode": nullable(string(enum=["member", "byok"])),
        "status": nullable(integer()), "provider": nullable(string()), "model": nullable(string()),
        "task": nullable(string()), "key_source": nullable(string()),
        "tokens_in": nullable(integer()), "tokens_out": nullable(integer()),
        "usage": nullable(string(enum=["measured", "estimated", "corrected"])),
        "credits": nullable(CREDITS), "credits_micro": nullable(integer()), "multiplier": nullable(MULTIPLIER),
        "reserved": nullable(CREDITS), "reserved_micro": nullable(integer()), "shortfall": nullable(CREDITS),
        "fallback_path": array(string(), "provider:outcome per attempt."), "stream": nullable(BOOL),
        "error_code": nullable(string()), "latency_ms": nullable(integer()), "output_limit": nullable(integer()),
        "api_key": nullable(obj({"id": UUID, "name": string(), "prefix": string()},
                                description="The personal API key the request came with (never the key).")),
        "team_id": nullable(UUID),
        "cached_tokens": nullable(integer("Of tokens_in: read from the provider's cache (cached-input rate).")),
        "cache_write_tokens": nullable(integer("Of tokens_in: written to the provider's cache (cache-write rate).")),
        "reasoning_tokens": nullable(integer("Of tokens_out: hidden reasoning (output rate, counted once).")),
    }, description="One of your requests: no key and no prompt text. Null fields are not known yet (in flight)."),
    "UserReceiptEnvelope": obj({"receipt": ref("UserReceipt")}),
    "CreditSettings": obj({
        "signup_grant": CREDITS, "signup_grant_micro": MICRO,
        "currency_code": string("ISO 4217 style, three letters."), "currency_symbol": string(maxLength=4),
        "credit_value": string("Currency units one credit is worth (display only), six decimals.",
                               pattern=r"^[0-9]+\.[0-9]{6}$"),
        "credit_value_label": string("Such as `1 credit = $1.00`."),
        "low_balance_threshold": CREDITS, "low_balance_threshold_micro": MICRO,
        "updated_at": DATETIME, "updated_by": nullable(string("The email of the admin who last changed them.")),
    }),
    "CreditSettingsEnvelope": obj({"settings": ref("CreditSettings")}),
    "CreditSettingsSaved": obj({
        "settings": ref("CreditSettings"),
        "changed": array(string(enum=["signup_grant", "currency_code", "currency_symbol", "credit_value",
                                      "low_balance_threshold"]), "What changed (empty: nothing, nothing audited)."),
    }),
    "CreditSettingsUpdate": {**obj({
        "signup_grant": {**AMOUNT_IN, "description": "Credits every new account is granted (0: none)."},
        "currency_code": string("Three letters, such as USD (upper-cased)."),
        "currency_symbol": string("Up to 4 characters without spaces, such as $; empty shows the code."),
        "credit_value": {**AMOUNT_IN, "description": "Currency units one credit is worth, 0 to 1,000,000."},
        "low_balance_threshold": {**AMOUNT_IN, "description": "Warn a user whose balance is under this (credits)."},
    }, [], description="Only the fields sent change."), "minProperties": 1},
}


def _credit_paths() -> dict[str, Schema]:
    errs = ("401", "503")
    return {
        "/api/user/credits/ledger": {
            "get": _op("getUserLedger", "User", "Your ledger, one page at a time",
                       "Newest first, keyset-paged on the entry id: the sum of every page's `delta_micro` is your "
                       "balance.", "user",
                       {"200": _json(ref("LedgerPage"), "One page."), **_errors(*errs, "422")},
                       parameters=[
                           _param("limit", "query", or_empty(integer(minimum=1, maximum=100)),
                                  "Entries per page, 1 to 100 (25)."),
                           _param("before", "query", or_empty(integer(minimum=1, maximum=2**63 - 1)),
                                  "Only entries older than this id (the previous page's `next_before`)."),
                       ]),
        },
        "/api/user/llm/receipts/{request_id}": {
            "parameters": [_param("request_id", "path", string(minLength=1, pattern="^[^/]+$"),
                                  "The request id (the X-Request-Id of the answer); anything but one of your "
                                  "requests' ids is a 404.")],
            "get": _op("getUserReceipt", "User", "One of your requests' receipt",
                       "Mode, provider, model, tokens, credits (held and charged), usage source, fallback path, "
                       "the personal API key's name. Another user's request id is a 404, like an unknown one.",
                       "user",
                       {"200": _json(ref("UserReceiptEnvelope"), "The receipt."),
                        "404": _json(ref("ApiError"), "None of your requests has this id (`request_not_found`)."),
                        **_errors(*errs)}),
        },
        "/api/admin/settings/credits": {
            "get": _op("adminGetCreditSettings", "Admin: users", "Credit settings",
                       "The sign-up grant, a credit's display value and the low-balance threshold.", "admin",
                       {"200": _json(ref("CreditSettingsEnvelope"), "The settings."),
                        **_errors("401", "403", "503")}),
            "put": _op("adminUpdateCreditSettings", "Admin: users", "Change the credit settings",
                       "Only the fields sent change; audited (`settings.credits`, before and after). The sign-up "
                       "grant applies from the next sign-up, through the ledger.", "admin",
                       {"200": _json(ref("CreditSettingsSaved"), "The settings after the change."),
                        **_errors("401", "403", "413", "422", "503")},
                       body=_body(ref("CreditSettingsUpdate"), "The fields to change.")),
        },
    }


@functools.cache
def _build() -> Schema:
    from webapp.services import openapi_messages, openapi_teams  # they build on this module's helpers

    paths: dict[str, Schema] = {}
    for part in (_v1_paths(), _user_paths(), _api_key_paths(), _pricing_paths(), _admin_paths(), _meta_paths(),
                 _credit_paths(), openapi_teams.paths()):
        paths.update(part)
    schemas: dict[str, Schema] = {}
    for group in (ERROR_SCHEMAS, COMMON_SCHEMAS, V1_SCHEMAS, USER_SCHEMAS, API_KEY_SCHEMAS, PRICING_SCHEMAS,
                  ADMIN_SCHEMAS, META_SCHEMAS, CREDIT_SCHEMAS, openapi_teams.SCHEMAS, _declared_schemas(),
                  openapi_messages.schemas()):
        schemas.update(group)
    from webapp.services import openapi_exports  # date ranges and CSV exports on the usage and report routes

    openapi_exports.apply(paths, schemas)
    from webapp.services import openapi_webhooks  # issue 16: webhook endpoints (user, team, site)

    openapi_webhooks.apply(paths, schemas)
    return {
        "openapi": "3.1.0",
        "jsonSchemaDialect": "https://spec.openapis.org/oas/3.1/dialect/base",
        "info": {"title": "Switchboard API", "version": VERSION, "description": INFO_DESCRIPTION},
        "servers": [{"url": "/", "description": "This Switchboard instance."}],
        "security": [{"bearerAuth": []}],
        "tags": TAGS,
        "paths": paths,
        "components": {
            "securitySchemes": {"bearerAuth": {
                "type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                "description": "A Supabase access token (JWT) from sign-in, or a personal API key (sb_...) "
                               "where a user's token is accepted. Admin operations need app_metadata.role = "
                               "admin (and never accept a key)."}},
            "schemas": schemas,
            "responses": RESPONSES,
        },
    }


def document() -> Schema:
    """The OpenAPI document (a fresh copy: callers may change it freely)."""
    return copy.deepcopy(_build())


def operations(doc: Schema | None = None) -> list[tuple[str, str, Schema]]:
    """(METHOD, path, operation) for every operation, in document order."""
    doc = doc or _build()
    out = []
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method in {"get", "put", "post", "delete", "patch", "head", "options", "trace"}:
                out.append((method.upper(), path, op))
    return out
