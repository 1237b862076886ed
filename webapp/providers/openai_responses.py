"""OpenAI's Responses API passed through (POST {base_url}/responses), for presets that speak it (`responses_api`).

The gateway runs every /v1/responses request as a chat request (counted, priced, routed, settled as one); for a
route whose provider speaks the Responses API this adapter sends the client's own Responses body instead, with the
route's model and the output limit the gateway wrote into the chat body, and hands the gateway chat-shaped answers
(text, tool calls and usage, for its accounting) that carry the provider's own object or event under `_responses`
/ `_event` for the client."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from typing import Any

from webapp.providers.base import Adapter, Target, UpstreamFailure, UpstreamStream
from webapp.providers.openai_compat import OpenAICompatAdapter
from webapp.providers.openai_compat import _headers as openai_headers
from webapp.providers.sse import SSEEvent
from webapp.providers.transport import error_body, join_url, open_event_stream, protocol_error, read_json, send

# Fields a server may read as an output limit: only max_output_tokens (the gateway's limit) is sent.
_LIMIT_LIKE = re.compile(r"^(?:max|min)_\w*tokens$|^n_predict$|^num_predict$|^max_new_tokens$", re.IGNORECASE)
_FINAL = {"response.completed": "stop", "response.incomplete": "length"}


def usage_to_chat(usage: Any) -> dict[str, Any] | None:
    """A Responses `usage` object in chat terms (what the gateway's settle reads): input_tokens -> prompt_tokens
    with its cached_tokens, output_tokens -> completion_tokens with its reasoning_tokens."""
    if not isinstance(usage, dict):
        return None
    out: dict[str, Any] = {"prompt_tokens": usage.get("input_tokens"),
                           "completion_tokens": usage.get("output_tokens")}
    if isinstance(usage.get("total_tokens"), int):
        out["total_tokens"] = usage["total_tokens"]
    cached = (usage.get("input_tokens_details") or {}) if isinstance(usage.get("input_tokens_details"), dict) else {}
    if "cached_tokens" in cached:
        out["prompt_tokens_details"] = {"cached_tokens": cached["cached_tokens"]}
    details = usage.get("output_tokens_details")
    if isinstance(details, dict) and "reasoning_tokens" in details:
        out["completion_tokens_details"] = {"reasoning_tokens": details["reasoning_tokens"]}
    return out


def chat_shape(response: dict[str, Any]) -> dict[str, Any]:
    """A response object as a chat.completion (text and tool calls for the gateway's count), the original kept."""
    text: list[str] = []
    calls: list[dict[str, Any]] = []
    for item in response.get("output") or []:
        if not isinstance(item, dict):
            continue
        if item.get("type") == "message":
            content = item.get("content")
            for part in content if isinstance(content, list) else []:
                if isinstance(part, dict) and isinstance(part.get("text"), str):
                    text.append(part["text"])
        elif item.get("type") == "function_call":
            calls.append({"id": str(item.get("call_id") or ""), "type": "function",
                          "function": {"name": str(item.get("name") or ""),
                                       "arguments": str(item.get("arguments") or "")}})
    message: dict[str, Any] = {"role": "assistant", "content": "".join(text)}
    if calls:
        message["tool_calls"] = calls
    finish = "length" if response.get("status") == "incomplete" else "tool_calls" if calls else "stop"
    return {"id": response.get("id"), "object": "chat.completion", "model": response.get("model"),
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": usage_to_chat(response.get("usage")), "_responses": response}


def translate_responses_events(events: Iterable[SSEEvent], url: str = "", secret: str | None = None
                               ) -> Iterator[dict[str, Any]]:
    """Responses SSE events -> chat chunks carrying each event under `_event`: text and argument deltas as chat
    deltas, the final event with the usage. response.failed and `error` events are upstream failures; a stream
    that ends before its final event was cut."""
    for event in events:
        data = event.data.strip()
        if data == "[DONE]":
            break
        try:
            payload = json.loads(data)
        except ValueError:
            raise protocol_error(url, "stream sent an event that is not JSON") from None
        if not isinstance(payload, dict):
            raise protocol_error(url, "stream sent an event that is not a JSON object")
        kind = payload.get("type") or event.event
        if kind in ("error", "response.failed") or ("error" in payload and "type" not in payload):
            response = payload.get("response")
            if kind == "response.failed" and isinstance(response, dict) and isinstance(response.get("error"), dict):
                data = json.dumps({"error": response["error"]})
            body = error_body(data.encode("utf-8"), 200, secret)
            raise UpstreamFailure("protocol", f"stream error from upstream: {body['error']['message'][:300]}",
                                  retryable=False, error_body=body)
        chunk: dict[str, Any] = {"choices": [], "_event": payload}
        if kind == "response.output_text.delta" and isinstance(payload.get("delta"), str):
            chunk["choices"] = [{"index": 0, "delta": {"content": payload["delta"]}}]
        elif kind == "response.function_call_arguments.delta" and isinstance(payload.get("delta"), str):
            chunk["choices"] = [{"index": 0, "delta": {"tool_calls": [
                {"index": 0, "function": {"arguments": payload["delta"]}}]}}]
        elif kind in _FINAL:
            response = payload.get("response") if isinstance(payload.get("response"), dict) else {}
            chunk["choices"] = [{"index": 0, "delta": {}, "finish_reason": _FINAL[kind]}]
            chunk["usage"] = usage_to_chat(response.get("usage")) or {}
            yield chunk
            return
        yield chunk
    raise protocol_error(url, "stream ended before response.completed")


class ResponsesPassthrough(Adapter):
    """One request's adapter: `raw` is the client's Responses body (metadata.task already taken out)."""

    def __init__(self, raw: dict[str, Any]) -> None:
        self.raw = raw

    def body(self, chat_body: dict[str, Any], stream: bool) -> dict[str, Any]:
        """The client's body with the route's model and the gateway's output limit (every other limit-like field
        removed), `stream` as the gateway opens it."""
        out = {k: v for k, v in self.raw.items() if not _LIMIT_LIKE.match(k)}
        out["model"] = chat_body["model"]
        limits = [v for k, v in chat_body.items() if _LIMIT_LIKE.match(k) and isinstance(v, int)]
        if limits:
            out["max_output_tokens"] = min(limits)
        out["stream"] = stream
        return out

    def complete(self, target: Target, body: dict[str, Any]) -> dict[str, Any]:
        url = join_url(target.base_url, "responses")
        resp = send(target, "POST", url, headers=openai_headers(target), json_body=self.body(body, False))
        data = read_json(resp, target, url)
        if not isinstance(data, dict) or data.get("object") != "response" or not isinstance(data.get("output"),
                                                                                             list):
            raise protocol_error(url, "answer is not a response object")
        return chat_shape(data)

    def open_stream(self, target: Target, body: dict[str, Any]) -> UpstreamStream:
        url = join_url(target.base_url, "responses")
        return open_event_stream(target, url, openai_headers(target, stream=True), self.body(body, True),
                                 translate_responses_events)

    def list_models(self, target: Target) -> list[str]:
        return OpenAICompatAdapter().list_models(target)


def stored_response(target: Target, response_id: str, method: str) -> dict[str, Any]:
    """GET or DELETE {base_url}/responses/{id}: a response the provider keeps (OpenAI's answer as it sent it)."""
    url = join_url(target.base_url, f"responses/{response_id}")
    resp = send(target, method, url, headers=openai_headers(target))
    data = read_json(resp, target, url)
    if not isinstance(data, dict):
        raise protocol_error(url, "answer is not a JSON object")
    return data
