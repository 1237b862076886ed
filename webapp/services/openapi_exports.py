"""The OpenAPI part of date ranges and CSV exports (issue 13): the `range`/`from`/`to` and `format` parameters of the
usage, requests, admin analytics and admin logs routes, their text/csv answers, and the requests list. Applied by
openapi_doc._build to the paths and schemas it has built (it builds on that module's helpers)."""

from __future__ import annotations

from typing import Any

from webapp.services.date_ranges import MAX_DAYS, PRESETS
from webapp.services.openapi_doc import (
    CREDITS,
    DATE,
    DATETIME,
    MICRO,
    UUID,
    Schema,
    _errors,
    _json,
    _op,
    _param,
    array,
    integer,
    nullable,
    obj,
    or_empty,
    ref,
    string,
)

RANGE_TEXT = (f"Whole days in UTC, both ends included, at most {MAX_DAYS} days. `range` picks a preset (7d, 30d, "
              "this_month, last_month, year = the last 366 days) or `custom` (from/to); from/to without `range` "
              "mean custom, and sent with a preset they must still be dates but are not used. One end alone: `to` "
              "defaults to today, `from` to 29 days before `to`. A bad range is a 422 `validation_error` naming "
              "`range`, `from` or `to` (to before from, or a span too long, is reported on `from`).")
DAY = string("A day such as 2026-11-23; surrounding whitespace is ignored.",
             pattern=r"^\s*([0-9]{4}-[0-9]{2}-[0-9]{2})?\s*$")
CSV_TEXT = ("`format=csv` answers text/csv instead (UTF-8, CRLF, a header row, then one row per item: the JSON "
            "item's fields, flattened), streamed, as an attachment named switchboard-<what>[-<from>-to-<to>].csv. "
            "A text cell starting with `=`, `+`, `-`, `@`, a tab or a carriage return is written with a leading `'` "
            "so spreadsheets show it as text, never run it as a formula.")
CSV_CONTENT: Schema = {"text/csv": {"schema": {"type": "string", "description": "CSV text (see `format`)."}}}


def range_params() -> list[Schema]:
    return [
        _param("range", "query", or_empty(string(enum=list(PRESETS))), "A preset, or `custom` (default: 30d)."),
        _param("from", "query", DAY, "First day (custom)."),
        _param("to", "query", DAY, "Last day (custom; default today, UTC)."),
    ]


def format_param() -> Schema:
    return _param("format", "query", or_empty(string(enum=["json", "csv"])), "json (default) or csv. " + CSV_TEXT)


SCHEMAS: dict[str, Schema] = {
    "UserRequest": obj({
        "request_id": UUID, "created_at": DATETIME, "mode": string(enum=["member", "byok"]),
        "provider": nullable(string()), "model": nullable(string()), "task": nullable(string()),
        "tokens_in": integer(), "tokens_out": integer(),
        "cached_tokens": integer("Of tokens_in, those served from the provider's prompt cache."),
        "cache_write_tokens": integer("Of tokens_in, those written to the provider's prompt cache."),
        "reasoning_tokens": integer("Of tokens_out, hidden reasoning."),
        "usage": nullable(string(enum=["measured", "estimated", "corrected"])), "credits": CREDITS,
        "credits_micro": MICRO, "status": integer(), "error_code": nullable(string()), "latency_ms": integer(),
        "api_key_id": nullable(UUID), "api_key_name": nullable(string()), "team_id": nullable(UUID),
    }, description="One of your requests (its receipt: GET /api/user/llm/receipts/{request_id})."),
    "UserRequestPage": obj({
        "from": DATE, "to": DATE, "range": string(enum=list(PRESETS)), "limit": integer(minimum=1, maximum=200),
        "requests": array(ref("UserRequest"), "Newest first."),
        "newer": nullable(string("Pass as `after` for the newer page; null when this is the newest.")),
        "older": nullable(string("Pass as `before` for the older page; null when this is the oldest.")),
    }),
}


def _with_csv(op: Schema) -> None:
    """The 200 answer may also be text/csv; the `format` parameter says when."""
    ok = op["responses"]["200"]
    ok["content"] = {**ok["content"], **CSV_CONTENT}
    ok["description"] += " With format=csv, a CSV download."
    op["parameters"] = [*op.get("parameters", []), format_param()]


def _with_range(op: Schema) -> None:
    """Replace the operation's from/to with the range parameters."""
    kept = [p for p in op.get("parameters", []) if p.get("name") not in ("from", "to", "range")]
    op["parameters"] = [*range_params(), *kept]
    op["description"] = (op["description"] + " " + RANGE_TEXT).strip()


def _requests_path() -> Schema:
    cursor = string(pattern="^[A-Za-z0-9_-]{1,160}$")
    return {"get": _op(
        "getUserRequests", "User", "Every one of your requests in a date range",
        "Newest first, a keyset page at a time (stable while new requests arrive): follow `older` with `before`, "
        "`newer` with `after`. Only your own requests (not your team's). " + RANGE_TEXT,
        "user",
        {"200": _json(ref("UserRequestPage"), "One page."), **_errors("401", "503", "422")},
        parameters=[
            *range_params(),
            _param("limit", "query", or_empty(integer(minimum=1, maximum=200)), "Rows per page, 1 to 200 (50)."),
            _param("before", "query", or_empty(cursor), "A page's `older`: the requests older than it."),
            _param("after", "query", or_empty(cursor), "A page's `newer`: the requests newer than it."),
            _param("api_key", "query", or_empty(UUID), "Only requests made with this personal API key (its id)."),
        ])}


def apply(paths: dict[str, Any], schemas: dict[str, Any]) -> None:
    schemas.update(SCHEMAS)
    paths["/api/user/llm/requests"] = _requests_path()
    usage = paths["/api/user/llm/usage"]["get"]
    schemas["UsageSummary"] = _with_range_field(schemas["UsageSummary"])
    analytics = paths["/api/admin/usage"]["get"]
    schemas["Analytics"] = _with_range_field(schemas["Analytics"])
    for op in (usage, analytics):
        _with_range(op)
    for op in (usage, paths["/api/user/llm/requests"]["get"], analytics, paths["/api/admin/logs"]["get"]):
        _with_csv(op)
    usage["description"] += " CSV: one row per bucket (the group columns, then the totals)."
    analytics["description"] += " CSV: one row per day (`days`)."
    paths["/api/admin/logs"]["get"]["description"] += (
        " CSV: every row the filters match (paging ignored), one row per log with admin_key and api_key "
        "flattened to admin_key_id/_last4/_label and api_key_id/_name/_prefix, fallback_path joined by ' > '.")


def _with_range_field(schema: Schema) -> Schema:
    props = {**schema["properties"], "range": string("The preset used, or custom.", enum=list(PRESETS))}
    return {**schema, "properties": props, "required": [*schema["required"], "range"]}
