"""Structured output for a wire format without `response_format` (Anthropic's Messages API): the requested JSON
schema becomes one forced tool, and the tool call it answers with becomes the message text — JSON, which is what
`response_format` promises. Used for /v1/responses' `text.format` on such routes (services/responses_api.py).

A request that already has tools cannot also force one for its format: refused with a 400, never half-honoured."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from webapp.providers.base import Adapter, Target, UpstreamFailure, UpstreamStream

_OBJECT = {"type": "object"}


def _refused(message: str) -> UpstreamFailure:
    return UpstreamFailure("status", f"cannot translate the request: {message}", status=400, retryable=False,
                           error_body={"error": {"message": message, "type": "invalid_request_error"}})


def as_tool(body: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """(the body with its json_schema / json_object format as a forced tool, that tool's name) or (body, None)."""
    fmt = body.get("response_format")
    if not isinstance(fmt, dict) or fmt.get("type") not in ("json_schema", "json_object"):
        return body, None
    if body.get("tools"):
        raise _refused("structured output (text.format / response_format) together with tools is not supported "
                       "by this provider")
    spec = fmt.get("json_schema") if isinstance(fmt.get("json_schema"), dict) else {}
    name = str(spec.get("name") or "json_answer")
    schema = spec.get("schema") if isinstance(spec.get("schema"), dict) else _OBJECT
    function: dict[str, Any] = {"name": name, "description": str(spec.get("description") or
                                                                 "Give the answer as this JSON object."),
                                "parameters": schema}
    out = {k: v for k, v in body.items() if k not in ("response_format", "parallel_tool_calls")}
    out["tools"] = [{"type": "function", "function": function}]
    out["tool_choice"] = {"type": "function", "function": {"name": name}}
    return out, name


def _answer(data: dict[str, Any], name: str) -> dict[str, Any]:
    for choice in data.get("choices") if isinstance(data.get("choices"), list) else []:
        message = choice.get("message") if isinstance(choice, dict) else None
        if not isinstance(message, dict):
            continue
        calls = message.get("tool_calls") if isinstance(message.get("tool_calls"), list) else []
        texts = [str((c.get("function") or {}).get("arguments") or "") for c in calls
                 if isinstance(c, dict) and isinstance(c.get("function"), dict) and c["function"].get("name") == name]
        if texts:
            choice["message"] = {**{k: v for k, v in message.items() if k != "tool_calls"},
                                 "content": "".join(texts)}
            if choice.get("finish_reason") == "tool_calls":
                choice["finish_reason"] = "stop"
    return data


class _Stream(UpstreamStream):
    def __init__(self, inner: UpstreamStream, name: str) -> None:
        self.inner, self.name = inner, name

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for chunk in self.inner:
            for choice in chunk.get("choices") if isinstance(chunk.get("choices"), list) else []:
                delta = choice.get("delta") if isinstance(choice, dict) else None
                if not isinstance(delta, dict) or not isinstance(delta.get("tool_calls"), list):
                    continue
                text = "".join(str((c.get("function") or {}).get("arguments") or "") for c in delta["tool_calls"]
                               if isinstance(c, dict) and isinstance(c.get("function"), dict))
                choice["delta"] = {**{k: v for k, v in delta.items() if k != "tool_calls"}, "content": text}
                if choice.get("finish_reason") == "tool_calls":
                    choice["finish_reason"] = "stop"
            yield chunk

    def close(self) -> None:
        self.inner.close()


class ForcedToolAdapter(Adapter):
    """`inner` with structured output carried as a forced tool (see the module docstring)."""

    def __init__(self, inner: Adapter) -> None:
        self.inner = inner

    def complete(self, target: Target, body: dict[str, Any]) -> dict[str, Any]:
        sent, name = as_tool(body)
        data = self.inner.complete(target, sent)
        return _answer(data, name) if name else data

    def open_stream(self, target: Target, body: dict[str, Any]) -> UpstreamStream:
        sent, name = as_tool(body)
        stream = self.inner.open_stream(target, sent)
        return _Stream(stream, name) if name else stream

    def list_models(self, target: Target) -> list[str]:
        return self.inner.list_models(target)
