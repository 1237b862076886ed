"""Adapter for the Anthropic Messages API: OpenAI chat requests are translated to /messages and the answers
(JSON or SSE) back to OpenAI `chat.completion` / `chat.completion.chunk` shapes."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from typing import Any

from webapp.providers.base import Adapter, Target, UpstreamFailure, UpstreamStream, with_extra_headers
from webapp.providers.openai_compat import model_ids, read_model_list
from webapp.providers.sse import SSEEvent
from webapp.providers.transport import (
    error_body,
    join_url,
    open_event_stream,
    protocol_error,
    read_json,
    send,
)

ANTHROPIC_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 4096

FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


def bad_request(message: str) -> UpstreamFailure:
    """The request cannot be expressed for Anthropic. Shaped like an upstream 400 so the gateway passes it
    to the client as a client error and does not retry."""
    return UpstreamFailure("status", f"cannot translate the request for Anthropic: {message}", status=400,
                           retryable=False,
                           error_body={"error": {"message": message, "type": "invalid_request_error"}})


# ---------------------------------------------------------------------------------------------------------------
# OpenAI request → Anthropic request

def _text_of(content: Any) -> str:
    """Plain text of an OpenAI content value (a string or a list of text parts)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text":
                raise bad_request("only text parts are allowed here")
            texts.append(str(part.get("text", "")))
        return "\n".join(texts)
    raise bad_request("message content must be a string or a list of parts")


def _image_block(part: dict[str, Any]) -> dict[str, Any]:
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, dict) else image
    if not isinstance(url, str):
        raise bad_request("image_url part has no url")
    if url.startswith("data:"):
        header, sep, data = url[5:].partition(",")
        media_type, _, encoding = header.partition(";")
        if not sep or encoding != "base64" or not media_type:
            raise bad_request("image data URLs must look like data:<media type>;base64,<data>")
        return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}
    if url.startswith(("https://", "http://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    raise bad_request("image_url must be a data: URL or an http(s) URL")


def _content_blocks(content: Any) -> list[dict[str, Any]]:
    """OpenAI content → Anthropic blocks. Empty text is dropped (Anthropic rejects empty text blocks)."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if not isinstance(content, list):
        raise bad_request("message content must be a string or a list of parts")
    blocks: list[dict[str, Any]] = []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            if part.get("text"):
                blocks.append({"type": "text", "text": str(part["text"])})
        elif kind == "image_url":
            blocks.append(_image_block(part))
        else:
            raise bad_request(f"content part type {kind!r} is not supported")
    return blocks


def _tool_use_blocks(tool_calls: Any) -> list[dict[str, Any]]:
    if not tool_calls:
        return []
    if not isinstance(tool_calls, list):
        raise bad_request("tool_calls must be a list")
    blocks = []
    for call in tool_calls:
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise bad_request("each tool call needs a function name")
        raw = fn.get("arguments") or "{}"
        try:
            args = json.loads(raw) if isinstance(raw, str) else raw
        except ValueError:
            raise bad_request(f"arguments of tool call {fn['name']!r} are not valid JSON") from None
        if not isinstance(args, dict):
            raise bad_request(f"arguments of tool call {fn['name']!r} must be a JSON object")
        blocks.append({"type": "tool_use", "id": str(call.get("id") or ""), "name": fn["name"], "input": args})
    return blocks


def _append(messages: list[dict[str, Any]], role: str, blocks: list[dict[str, Any]]) -> None:
    """Add a turn; consecutive turns of one role are merged, as Anthropic wants strict alternation."""
    if not blocks:
        return
    if messages and messages[-1]["role"] == role:
        messages[-1]["content"].extend(blocks)
    else:
        messages.append({"role": role, "content": blocks})


def _tools(tools: Any) -> list[dict[str, Any]]:
    if not isinstance(tools, list):
        raise bad_request("tools must be a list")
    out = []
    for tool in tools:
        fn = tool.get("function") if isinstance(tool, dict) and tool.get("type") == "function" else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise bad_request("only function tools with a name are supported")
        item: dict[str, Any] = {"name": fn["name"],
                                "input_schema": fn.get("parameters") or {"type": "object", "properties": {}}}
        if fn.get("description"):
            item["description"] = fn["description"]
        out.append(item)
    return out


def _tool_choice(choice: Any, parallel: Any) -> dict[str, Any] | None:
    result: dict[str, Any] | None
    if choice is None:
        result = None
    elif choice == "auto":
        result = {"type": "auto"}
    elif choice == "none":
        result = {"type": "none"}
    elif choice == "required":
        result = {"type": "any"}
    elif isinstance(choice, dict) and isinstance((choice.get("function") or {}).get("name"), str):
        result = {"type": "tool", "name": choice["function"]["name"]}
    else:
        raise bad_request("tool_choice must be auto, none, required or a named function")
    if parallel is False and (result is None or result["type"] != "none"):
        result = {**(result or {"type": "auto"}), "disable_parallel_tool_use": True}
    return result


def to_anthropic_request(body: dict[str, Any]) -> dict[str, Any]:
    """An OpenAI chat request → an Anthropic Messages request; a field of the wrong type is a clear 400."""
    try:
        return _to_anthropic_request(body)
    except (TypeError, ValueError, AttributeError, KeyError):
        raise bad_request("The request has a field of the wrong type for this provider.") from None


def _to_anthropic_request(body: dict[str, Any]) -> dict[str, Any]:
    """Translate an OpenAI chat request to an Anthropic Messages request (without `stream`)."""
    messages = body.get("messages")
    if not isinstance(messages, list):
        raise bad_request("messages must be a list")
    system: list[str] = []
    turns: list[dict[str, Any]] = []
    for msg in messages:
        role = msg.get("role") if isinstance(msg, dict) else None
        if role in ("system", "developer"):
            text = _text_of(msg.get("content"))
            if text:
                system.append(text)
        elif role == "user":
            _append(turns, "user", _content_blocks(msg.get("content")))
        elif role == "assistant":
            blocks = _content_blocks(msg.get("content")) + _tool_use_blocks(msg.get("tool_calls"))
            _append(turns, "assistant", blocks)
        elif role == "tool":
            result = {"type": "tool_result", "tool_use_id": str(msg.get("tool_call_id") or ""),
                      "content": _text_of(msg.get("content"))}
            _append(turns, "user", [result])
        else:
            raise bad_request(f"message role {role!r} is not supported")

    max_tokens = body.get("max_tokens") or body.get("max_completion_tokens") or DEFAULT_MAX_TOKENS
    out: dict[str, Any] = {"model": body.get("model"), "max_tokens": max_tokens, "messages": turns}
    if system:
        out["system"] = "\n\n".join(system)
    for name in ("temperature", "top_p", "top_k"):
        if body.get(name) is not None:
            out[name] = body[name]
    stop = body.get("stop")
    if stop:
        if isinstance(stop, str):
            out["stop_sequences"] = [stop]
        elif isinstance(stop, list) and all(isinstance(x, str) for x in stop):
            out["stop_sequences"] = stop
        else:
            raise bad_request("`stop` must be a string or an array of strings.")
    if body.get("tools"):
        out["tools"] = _tools(body["tools"])
        choice = _tool_choice(body.get("tool_choice"), body.get("parallel_tool_calls"))
        if choice is not None:
            out["tool_choice"] = choice
    if isinstance(body.get("user"), str):
        out["metadata"] = {"user_id": body["user"]}
    return out


# ---------------------------------------------------------------------------------------------------------------
# Anthropic response → OpenAI response

def to_openai_usage(usage: dict[str, Any]) -> dict[str, Any]:
    """Anthropic usage → OpenAI usage. Anthropic's input_tokens excludes cache reads and writes; OpenAI's
    prompt_tokens includes them, so they are added back."""
    def count(name: str) -> Any:
        value = usage.get(name) or 0
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    # A count that is not an integer is passed on as None: the gateway then recounts what was delivered.
    cache_write, cache_read = count("cache_creation_input_tokens"), count("cache_read_input_tokens")
    given = count("input_tokens")
    prompt = None if None in (given, cache_write, cache_read) else given + cache_write + cache_read
    completion = count("output_tokens")
    total = prompt + completion if prompt is not None and completion is not None else None
    out = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": total,
           "prompt_tokens_details": {"cached_tokens": cache_read or 0}}
    if cache_write:  # kept as Anthropic names it: the cache-write part is priced at the cache-write rate
        out["cache_creation_input_tokens"] = cache_write
    return out


def _finish_reason(stop_reason: Any) -> str | None:
    if stop_reason is None:
        return None
    return FINISH_REASONS.get(str(stop_reason), "stop")


def to_openai_response(data: dict[str, Any], created: int | None = None) -> dict[str, Any]:
    """An Anthropic `message` → an OpenAI `chat.completion`."""
    texts: list[str] = []
    tool_calls: list[dict[str, Any]] = []
    for block in data.get("content") or []:
        if not isinstance(block, dict):
            continue
        if block.get("type") == "text":
            texts.append(str(block.get("text", "")))
        elif block.get("type") == "tool_use":
            tool_calls.append({"id": block.get("id"), "type": "function",
                               "function": {"name": block.get("name"),
                                            "arguments": json.dumps(block.get("input") or {})}})
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts or not tool_calls else None}
    if tool_calls:
        message["tool_calls"] = tool_calls
    choice: dict[str, Any] = {"index": 0, "message": message, "finish_reason": _finish_reason(data.get("stop_reason")),
                              "logprobs": None}
    if data.get("stop_reason") == "stop_sequence" and isinstance(data.get("stop_sequence"), str):
        choice["stop_sequence"] = data["stop_sequence"]  # which one matched (/v1/messages answers it)
    out: dict[str, Any] = {
        "id": data.get("id"),
        "object": "chat.completion",
        "created": created if created is not None else int(time.time()),
        "model": data.get("model"),
        "choices": [choice],
    }
    if isinstance(data.get("usage"), dict):
        out["usage"] = to_openai_usage(data["usage"])
    return out


# ---------------------------------------------------------------------------------------------------------------
# Anthropic SSE → OpenAI chunks

class _StreamState:
    """What the translation of one stream has learnt so far."""

    def __init__(self, created: int) -> None:
        self.id: str | None = None
        self.model: str | None = None
        self.created = created
        self.usage: dict[str, Any] = {}
        self.tool_index: dict[int, int] = {}  # Anthropic content block index → OpenAI tool_calls index
        self.finished = False

    def chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        return {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}]}

    def usage_chunk(self) -> dict[str, Any]:
        return {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                "choices": [], "usage": to_openai_usage(self.usage)}


def _on_event(state: _StreamState, kind: str, data: dict[str, Any], url: str,
              secret: str | None) -> list[dict[str, Any]]:
    """The OpenAI chunks for one Anthropic event."""
    if kind == "message_start":
        message = data.get("message") or {}
        state.id, state.model = message.get("id"), message.get("model")
        state.usage.update(message.get("usage") or {})
        return [state.chunk({"role": "assistant", "content": ""})]
    if kind == "content_block_start":
        block = data.get("content_block") or {}
        if block.get("type") == "tool_use":
            index = state.tool_index[int(data.get("index", 0))] = len(state.tool_index)
            call = {"index": index, "id": block.get("id"), "type": "function",
                    "function": {"name": block.get("name"), "arguments": ""}}
            return [state.chunk({"tool_calls": [call]})]
        if block.get("type") == "text" and block.get("text"):
            return [state.chunk({"content": block["text"]})]
        return []
    if kind == "content_block_delta":
        delta = data.get("delta") or {}
        if delta.get("type") == "text_delta" and delta.get("text"):
            return [state.chunk({"content": delta["text"]})]
        tool_at = state.tool_index.get(int(data.get("index", -1)))
        if delta.get("type") == "input_json_delta" and delta.get("partial_json") and tool_at is not None:
            return [state.chunk({"tool_calls": [{"index": tool_at,
                                                 "function": {"arguments": delta["partial_json"]}}]})]
        return []  # thinking / signature deltas have no OpenAI equivalent
    if kind == "message_delta":
        state.usage.update({k: v for k, v in (data.get("usage") or {}).items() if v is not None})
        delta = data.get("delta") or {}
        reason = _finish_reason(delta.get("stop_reason"))
        state.finished = True
        chunk = state.chunk({}, reason or "stop")
        if delta.get("stop_reason") == "stop_sequence" and isinstance(delta.get("stop_sequence"), str):
            chunk["choices"][0]["stop_sequence"] = delta["stop_sequence"]
        return [chunk]
    if kind == "error":
        body = error_body(json.dumps(data).encode("utf-8"), 200, secret)
        err_type = str(body["error"].get("type", ""))
        raise UpstreamFailure("protocol", f"stream error from upstream: {err_type}: "
                              f"{str(body['error'].get('message', ''))[:300]}",
                              retryable=err_type in ("overloaded_error", "api_error"), error_body=body)
    return []  # ping, content_block_stop and event types added later


def translate_anthropic_events(events: Iterable[SSEEvent], url: str = "", secret: str | None = None,
                               created: int | None = None) -> Iterator[dict[str, Any]]:
    """Anthropic SSE events → OpenAI chunk dicts: a first chunk with role assistant, content / tool_calls
    deltas, a finish_reason chunk, then (when the upstream reported usage) a usage chunk with empty choices,
    as OpenAI sends with include_usage. The gateway always needs usage, so it is sent unconditionally."""
    state = _StreamState(created if created is not None else int(time.time()))
    for event in events:
        try:
            data = json.loads(event.data)
        except ValueError:
            raise protocol_error(url, "stream sent an event that is not JSON") from None
        if not isinstance(data, dict):
            raise protocol_error(url, "stream sent an event that is not a JSON object")
        kind = str(data.get("type") or event.event)
        try:
            chunks = _on_event(state, kind, data, url, secret)
        except (TypeError, ValueError, AttributeError):
            # A field of an unexpected type: report it as a protocol error, not a crash.
            raise protocol_error(url, f"stream sent a malformed {kind} event") from None
        yield from chunks
        if kind == "message_stop":
            break
    else:
        if not state.finished:
            raise protocol_error(url, "stream ended before message_stop")
    if state.usage:
        yield state.usage_chunk()


class AnthropicAdapter(Adapter):
    """POST {base_url}/messages with x-api-key; GET {base_url}/models."""

    def complete(self, target: Target, body: dict[str, Any]) -> dict[str, Any]:
        return self.complete_messages(target, to_anthropic_request(body))

    def complete_messages(self, target: Target, request: dict[str, Any]) -> dict[str, Any]:
        """Send a Messages request as it is (POST /v1/messages passes its body through); an OpenAI answer back."""
        url = join_url(target.base_url, "messages")
        data = read_json(send(target, "POST", url, headers=_headers(target), json_body=request), target, url)
        if not isinstance(data, dict) or data.get("type") != "message":
            raise protocol_error(url, "answer is not a message object")
        try:
            return to_openai_response(data)
        except (TypeError, ValueError, AttributeError):
            # A field of an unexpected type (found by the property tests): a protocol error, not a crash.
            raise protocol_error(url, "answer is a malformed message object") from None

    def open_stream(self, target: Target, body: dict[str, Any]) -> UpstreamStream:
        return self.open_messages_stream(target, to_anthropic_request(body))

    def open_messages_stream(self, target: Target, request: dict[str, Any]) -> UpstreamStream:
        """Stream a Messages request as it is; OpenAI chunks back."""
        url = join_url(target.base_url, "messages")
        return open_event_stream(target, url, _headers(target, stream=True), {**request, "stream": True},
                                 translate_anthropic_events)

    def list_models(self, target: Target) -> list[str]:
        url = join_url(target.base_url, "models")
        paged = url + ("&" if "?" in url else "?") + "limit=1000"  # one page holds every model Anthropic has
        data = read_model_list(send(target, "GET", paged, headers=_headers(target)), target, url)
        return model_ids(data, url)


def _headers(target: Target, *, stream: bool = False) -> dict[str, str]:
    headers = {"anthropic-version": ANTHROPIC_VERSION,
               "Accept": "text/event-stream" if stream else "application/json"}
    if stream:
        headers["Accept-Encoding"] = "identity"
    if target.api_key is not None:
        headers["x-api-key"] = target.api_key
    return with_extra_headers(target, headers)
