"""Anthropic Messages ⇄ OpenAI chat completions, for POST /v1/messages.

A Messages request is translated into a chat-completions body and run through the chat pipeline (modes, routing,
pins, fallbacks, limits, reservation, receipt, log), then the chat answer is translated back: a `message` object,
or Anthropic's SSE events. Towards an Anthropic provider the chat body is translated again by the outbound adapter
(webapp/providers/anthropic.py), which keeps what a Messages client sent (system, images, tools, tool results,
stop sequences, top_k); towards an OpenAI-compatible provider the chat body is what it reads.

Nothing is dropped silently: what cannot be expressed as a chat request (documents, server tools, extended
thinking, citations, ...) is refused with a 400 naming the field. Pure functions: no Flask, no database."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

from webapp.errors import AppError

STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "function_call": "tool_use",
                "content_filter": "refusal"}
MAX_TOOLS = 128
# Prompt-caching hints (`cache_control` on a block or tool) are accepted: an Anthropic provider receives the Messages
# body itself (messages_api.MessagesPassthrough); the chat body has no place for them, and OpenAI-compatible
# providers cache automatically (docs/api.md says so).
_CACHE_HINT = "cache_control"
_IMAGE_TYPES = {"image/jpeg", "image/png", "image/gif", "image/webp"}


def refused(message: str, param: str, code: str = "untranslatable") -> AppError:
    return AppError(message, code=code, status=400, field=param)


def _need(cond: bool, message: str, param: str) -> None:
    if not cond:
        raise refused(message, param, "invalid_value")


def _known(obj: dict[str, Any], allowed: set[str], where: str) -> None:
    """Every key of `obj` is one this translation understands: anything else is refused, naming it."""
    for key in obj:
        if key not in allowed:
            raise refused(f"`{where}.{key}` cannot be translated for this route.", f"{where}.{key}")


# -- request: Messages → chat --------------------------------------------------------------------------------------

def _text_block(block: dict[str, Any], where: str) -> str:
    _known(block, {"type", "text", _CACHE_HINT}, where)
    _need(isinstance(block.get("text"), str), f"`{where}.text` must be a string.", f"{where}.text")
    return str(block["text"])


def _image_part(block: dict[str, Any], where: str) -> dict[str, Any]:
    _known(block, {"type", "source", _CACHE_HINT}, where)
    source = block.get("source")
    _need(isinstance(source, dict), f"`{where}.source` must be an object.", f"{where}.source")
    kind = source.get("type")
    if kind == "base64":
        _known(source, {"type", "media_type", "data"}, f"{where}.source")
        media, data = source.get("media_type"), source.get("data")
        _need(media in _IMAGE_TYPES, f"`{where}.source.media_type` must be one of {', '.join(sorted(_IMAGE_TYPES))}.",
              f"{where}.source.media_type")
        _need(isinstance(data, str) and bool(data), f"`{where}.source.data` must be base64 text.",
              f"{where}.source.data")
        return {"type": "image_url", "image_url": {"url": f"data:{media};base64,{data}"}}
    if kind == "url":
        _known(source, {"type", "url"}, f"{where}.source")
        url = source.get("url")
        _need(isinstance(url, str) and url.startswith(("https://", "http://")),
              f"`{where}.source.url` must be an http(s) URL.", f"{where}.source.url")
        return {"type": "image_url", "image_url": {"url": url}}
    raise refused(f"`{where}.source.type` {kind!r} cannot be translated (base64 and url images can).",
                  f"{where}.source.type")


def _tool_result(block: dict[str, Any], where: str) -> dict[str, Any]:
    _known(block, {"type", "tool_use_id", "content", "is_error", _CACHE_HINT}, where)
    call_id = block.get("tool_use_id")
    _need(isinstance(call_id, str) and bool(call_id), f"`{where}.tool_use_id` must be a tool_use id.",
          f"{where}.tool_use_id")
    content = block.get("content", "")
    if isinstance(content, list):
        texts = []
        for j, part in enumerate(content):
            at = f"{where}.content[{j}]"
            _need(isinstance(part, dict), f"`{at}` must be a content block.", at)
            if part.get("type") != "text":
                raise refused(f"`{at}.type` {part.get('type')!r} cannot be translated: a tool result carries text "
                              "only on this route.", f"{at}.type")
            texts.append(_text_block(part, at))
        text = "\n".join(texts)
    else:
        _need(isinstance(content, str), f"`{where}.content` must be a string or an array of text blocks.",
              f"{where}.content")
        text = content
    is_error = block.get("is_error", False)
    _need(isinstance(is_error, bool), f"`{where}.is_error` must be true or false.", f"{where}.is_error")
    if is_error:  # chat tool messages have no error flag: it is said in the text
        text = f"[tool error] {text}"
    return {"role": "tool", "tool_call_id": call_id, "content": text}


def _tool_call(block: dict[str, Any], where: str) -> dict[str, Any]:
    _known(block, {"type", "id", "name", "input", _CACHE_HINT}, where)
    call_id, name, args = block.get("id"), block.get("name"), block.get("input", {})
    _need(isinstance(call_id, str) and bool(call_id), f"`{where}.id` must be a string.", f"{where}.id")
    _need(isinstance(name, str) and bool(name), f"`{where}.name` must be a string.", f"{where}.name")
    _need(isinstance(args, dict), f"`{where}.input` must be an object.", f"{where}.input")
    return {"id": call_id, "type": "function",
            "function": {"name": name, "arguments": json.dumps(args, ensure_ascii=False)}}


def _blocks(content: Any, where: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    _need(isinstance(content, list), f"`{where}` must be a string or an array of content blocks.", where)
    for j, block in enumerate(content):
        _need(isinstance(block, dict) and isinstance(block.get("type"), str),
              f"`{where}[{j}]` must be a content block with a type.", f"{where}[{j}]")
    return content


def _user_turn(content: Any, where: str) -> list[dict[str, Any]]:
    """One Messages user turn → chat messages: its tool results first (as `tool` messages, in order), then one user
    message with its text and images."""
    tools: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for j, block in enumerate(_blocks(content, where)):
        at, kind = f"{where}[{j}]", block["type"]
        if kind == "text":
            parts.append({"type": "text", "text": _text_block(block, at)})
        elif kind == "image":
            parts.append(_image_part(block, at))
        elif kind == "tool_result":
            tools.append(_tool_result(block, at))
        else:
            raise refused(f"`{at}.type` {kind!r} cannot be translated in a user turn (text, image and tool_result "
                          "can).", f"{at}.type")
    out = list(tools)
    if parts:
        only_text = all(p["type"] == "text" for p in parts)
        out.append({"role": "user", "content": "".join(p["text"] for p in parts) if only_text and len(parts) == 1
                    else parts})
    return out


def _assistant_turn(content: Any, where: str) -> dict[str, Any]:
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for j, block in enumerate(_blocks(content, where)):
        at, kind = f"{where}[{j}]", block["type"]
        if kind == "text":
            texts.append(_text_block(block, at))
        elif kind == "tool_use":
            calls.append(_tool_call(block, at))
        else:
            raise refused(f"`{at}.type` {kind!r} cannot be translated in an assistant turn (text and tool_use "
                          "can).", f"{at}.type")
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts or not calls else None}
    if calls:
        message["tool_calls"] = calls
    return message


def _system(system: Any) -> dict[str, Any] | None:
    if isinstance(system, str):
        return {"role": "system", "content": system} if system else None
    _need(isinstance(system, list), "`system` must be a string or an array of text blocks.", "system")
    texts = []
    for j, block in enumerate(system):
        at = f"system[{j}]"
        _need(isinstance(block, dict), f"`{at}` must be a text block.", at)
        if block.get("type") != "text":
            raise refused(f"`{at}.type` {block.get('type')!r} cannot be translated (system takes text blocks).",
                          f"{at}.type")
        texts.append(_text_block(block, at))
    text = "\n\n".join(t for t in texts if t)
    return {"role": "system", "content": text} if text else None


def _tools(tools: Any) -> list[dict[str, Any]]:
    _need(isinstance(tools, list) and len(tools) <= MAX_TOOLS, f"`tools` must be an array of at most {MAX_TOOLS}.",
          "tools")
    out = []
    for i, tool in enumerate(tools):
        at = f"tools[{i}]"
        _need(isinstance(tool, dict), f"`{at}` must be an object.", at)
        if tool.get("type") not in (None, "custom"):
            raise refused(f"`{at}.type` {tool.get('type')!r} is a server tool, which cannot be translated (custom "
                          "tools with an input_schema can).", f"{at}.type")
        _known(tool, {"type", "name", "description", "input_schema", _CACHE_HINT}, at)
        name, schema = tool.get("name"), tool.get("input_schema")
        _need(isinstance(name, str) and bool(name), f"`{at}.name` must be a string.", f"{at}.name")
        _need(isinstance(schema, dict), f"`{at}.input_schema` must be a JSON schema object.", f"{at}.input_schema")
        fn: dict[str, Any] = {"name": name, "parameters": schema}
        if tool.get("description") is not None:
            _need(isinstance(tool["description"], str), f"`{at}.description` must be a string.",
                  f"{at}.description")
            fn["description"] = tool["description"]
        out.append({"type": "function", "function": fn})
    return out


def _tool_choice(choice: Any) -> tuple[Any, bool | None]:
    """(chat tool_choice, parallel_tool_calls) for a Messages tool_choice."""
    _need(isinstance(choice, dict), "`tool_choice` must be an object.", "tool_choice")
    _known(choice, {"type", "name", "disable_parallel_tool_use"}, "tool_choice")
    kind = choice.get("type")
    parallel = choice.get("disable_parallel_tool_use")
    _need(parallel is None or isinstance(parallel, bool), "`tool_choice.disable_parallel_tool_use` must be true or "
          "false.", "tool_choice.disable_parallel_tool_use")
    if kind == "tool":
        _need(isinstance(choice.get("name"), str), "`tool_choice.name` must name a tool.", "tool_choice.name")
        mapped: Any = {"type": "function", "function": {"name": choice["name"]}}
    elif kind in ("auto", "any", "none"):
        _need("name" not in choice, "`tool_choice.name` goes with type tool only.", "tool_choice.name")
        mapped = {"auto": "auto", "any": "required", "none": "none"}[kind]
    else:
        raise refused("`tool_choice.type` must be auto, any, tool or none.", "tool_choice.type", "invalid_value")
    return mapped, (False if parallel else None)


REQUEST_FIELDS = {"model", "max_tokens", "messages", "system", "metadata", "stop_sequences", "stream",
                  "temperature", "top_p", "top_k", "tools", "tool_choice", "thinking", "service_tier", _CACHE_HINT}


def to_chat(body: Any) -> dict[str, Any]:
    """A Messages request → a chat-completions body (model, max_tokens and stream kept; the chat validation and the
    budget then apply as to any chat request). Raises AppError 400 for what it cannot translate."""
    _need(isinstance(body, dict), "The request body must be a JSON object.", "body")
    _known(body, REQUEST_FIELDS, "body")
    messages = body.get("messages")
    _need(isinstance(messages, list) and bool(messages), "`messages` must be a non-empty array.", "messages")
    _need("max_tokens" in body, "`max_tokens` is required.", "max_tokens")
    chat: list[dict[str, Any]] = []
    if body.get("system") is not None:  # null: no system prompt, as the document's nullable `system` says
        system = _system(body["system"])
        if system is not None:
            chat.append(system)
    for i, msg in enumerate(messages):
        at = f"messages[{i}]"
        _need(isinstance(msg, dict), f"`{at}` must be an object.", at)
        _known(msg, {"role", "content"}, at)
        role = msg.get("role")
        _need("content" in msg, f"`{at}.content` is required.", f"{at}.content")
        if role == "user":
            chat.extend(_user_turn(msg["content"], f"{at}.content"))
        elif role == "assistant":
            chat.append(_assistant_turn(msg["content"], f"{at}.content"))
        else:
            raise refused(f"`{at}.role` must be user or assistant.", f"{at}.role", "invalid_value")
    out: dict[str, Any] = {"model": body.get("model"), "messages": chat, "max_tokens": body.get("max_tokens")}
    for name in ("stream", "temperature", "top_p", "top_k"):
        if body.get(name) is not None:
            out[name] = body[name]
    _options(body, out)
    return out


def _options(body: dict[str, Any], out: dict[str, Any]) -> None:
    stop = body.get("stop_sequences")
    if stop is not None:
        _need(isinstance(stop, list) and all(isinstance(s, str) and s for s in stop) and len(stop) <= 16,
              "`stop_sequences` must be an array of at most 16 non-empty strings.", "stop_sequences")
        if stop:
            out["stop"] = stop
    if body.get("tools") is not None:
        tools = _tools(body["tools"])
        if tools:
            out["tools"] = tools
    if body.get("tool_choice") is not None:
        choice, parallel = _tool_choice(body["tool_choice"])
        if "tools" in out:
            out["tool_choice"] = choice
            if parallel is not None:
                out["parallel_tool_calls"] = parallel
        elif choice not in ("auto", "none"):
            raise refused("`tool_choice` names a tool, but `tools` is empty.", "tool_choice", "invalid_value")
    meta = body.get("metadata")
    if meta is not None:
        _need(isinstance(meta, dict), "`metadata` must be an object.", "metadata")
        _known(meta, {"user_id", "task"}, "metadata")
        if meta.get("user_id") is not None:
            _need(isinstance(meta["user_id"], str) and len(meta["user_id"]) <= 256,
                  "`metadata.user_id` must be a string of at most 256 characters.", "metadata.user_id")
            out["user"] = meta["user_id"]
        if meta.get("task") is not None:
            out["metadata"] = {"task": meta["task"]}
    thinking = body.get("thinking")
    if thinking is not None and not (isinstance(thinking, dict) and thinking.get("type") == "disabled"):
        raise refused("`thinking` (extended thinking) cannot be translated for this route; leave it out.",
                      "thinking")
    tier = body.get("service_tier")
    if tier is not None and tier not in ("auto", "standard_only"):
        raise refused("`service_tier` must be auto or standard_only.", "service_tier", "invalid_value")


# -- answer: chat → Messages ---------------------------------------------------------------------------------------

def message_id(upstream_id: Any, request_id: str) -> str:
    if isinstance(upstream_id, str) and upstream_id.startswith("msg_") and len(upstream_id) <= 200:
        return upstream_id
    return "msg_" + uuid.UUID(request_id).hex


def _tool_input(arguments: Any) -> dict[str, Any]:
    """A tool call's arguments as the object Messages carries. Arguments that are not a JSON object are not
    dropped: they travel as `{"arguments": <the text as sent>}`."""
    if isinstance(arguments, dict):
        return arguments
    try:
        parsed = json.loads(arguments) if isinstance(arguments, str) and arguments.strip() else {}
    except ValueError:
        parsed = None
    return parsed if isinstance(parsed, dict) else {"arguments": arguments}


def stop_reason(finish_reason: Any, stop_sequence: Any) -> str:
    if isinstance(stop_sequence, str):
        return "stop_sequence"
    return STOP_REASONS.get(str(finish_reason), "end_turn")


def usage_block(prompt: int, completion: int, cached: int, cache_write: int) -> dict[str, Any]:
    """Messages usage: `input_tokens` excludes the cache reads and writes, as Anthropic reports it."""
    return {"input_tokens": max(prompt - cached - cache_write, 0), "output_tokens": completion,
            "cache_read_input_tokens": cached, "cache_creation_input_tokens": cache_write}


def from_chat(body: dict[str, Any], model: str, request_id: str, receipt: dict[str, Any]) -> dict[str, Any]:
    """A chat.completion (one choice) → a Messages `message`. Usage is what the receipt charged."""
    choices = _list(body.get("choices"))
    choice = choices[0] if choices and isinstance(choices[0], dict) else {}
    message = choice.get("message") if isinstance(choice.get("message"), dict) else {}
    content: list[dict[str, Any]] = []
    text = message.get("content")
    if isinstance(text, str) and text:
        content.append({"type": "text", "text": text})
    for call in _list(message.get("tool_calls")):
        fn = call.get("function") if isinstance(call, dict) else None
        if isinstance(fn, dict):
            content.append({"type": "tool_use", "id": _call_id(call.get("id")), "name": str(fn.get("name") or ""),
                            "input": _tool_input(fn.get("arguments"))})
    seq = choice.get("stop_sequence") if isinstance(choice.get("stop_sequence"), str) else None
    return {"id": message_id(body.get("id"), request_id), "type": "message", "role": "assistant", "model": model,
            "content": content, "stop_reason": stop_reason(choice.get("finish_reason"), seq), "stop_sequence": seq,
            "usage": usage_block(receipt["prompt_tokens"], receipt["completion_tokens"],
                                 receipt.get("cached_tokens", 0), receipt.get("cache_write_tokens", 0)),
            "switchboard": receipt}


def _list(value: Any) -> list[Any]:
    """An upstream's array, or [] when it sent something else (every upstream number and shape is hostile)."""
    return value if isinstance(value, list) else []


def _call_id(value: Any) -> str:
    return value if isinstance(value, str) and value else "toolu_" + uuid.uuid4().hex


# -- stream: chat chunks → Messages events -------------------------------------------------------------------------

def event(kind: str, data: dict[str, Any]) -> bytes:
    return f"event: {kind}\ndata: {json.dumps(data, separators=(',', ':'), ensure_ascii=False)}\n\n".encode()


class StreamTranslator:
    """Chat-completion chunks (as the gateway streams them, usage chunk last) → Messages SSE events:
    message_start, ping, content_block_start / _delta / _stop per text or tool_use block, message_delta (stop reason,
    usage) and message_stop. An error chunk becomes an `error` event."""

    def __init__(self, model: str, request_id: str, prompt_estimate: int) -> None:
        self.model, self.request_id, self.prompt_estimate = model, request_id, prompt_estimate
        self.started = False
        self.block: str | None = None  # "text" or "tool:<chat index>" of the open block
        self.index = -1
        self.finish: Any = None
        self.stop_sequence: str | None = None
        self.ended = False

    def _start(self, chunk_id: Any) -> list[bytes]:
        if self.started:
            return []
        self.started = True
        message = {"id": message_id(chunk_id, self.request_id), "type": "message", "role": "assistant",
                   "model": self.model, "content": [], "stop_reason": None, "stop_sequence": None,
                   "usage": usage_block(self.prompt_estimate, 0, 0, 0)}
        return [event("message_start", {"type": "message_start", "message": message}),
                event("ping", {"type": "ping"})]

    def _close_block(self) -> list[bytes]:
        if self.block is None:
            return []
        self.block = None
        return [event("content_block_stop", {"type": "content_block_stop", "index": self.index})]

    def _open(self, key: str, block: dict[str, Any]) -> list[bytes]:
        out = self._close_block()
        self.block, self.index = key, self.index + 1
        out.append(event("content_block_start", {"type": "content_block_start", "index": self.index,
                                                 "content_block": block}))
        return out

    def _delta(self, delta: dict[str, Any]) -> list[bytes]:
        out: list[bytes] = []
        text = delta.get("content")
        if isinstance(text, str) and text:
            if self.block != "text":
                out += self._open("text", {"type": "text", "text": ""})
            out.append(event("content_block_delta", {"type": "content_block_delta", "index": self.index,
                                                     "delta": {"type": "text_delta", "text": text}}))
        for call in _list(delta.get("tool_calls")):
            if not isinstance(call, dict):
                continue
            key = f"tool:{call.get('index', 0)}"
            fn = call.get("function") if isinstance(call.get("function"), dict) else {}
            if self.block != key:
                out += self._open(key, {"type": "tool_use", "id": _call_id(call.get("id")),
                                        "name": str(fn.get("name") or ""), "input": {}})
            args = fn.get("arguments")
            if isinstance(args, str) and args:
                out.append(event("content_block_delta", {"type": "content_block_delta", "index": self.index,
                                                         "delta": {"type": "input_json_delta",
                                                                   "partial_json": args}}))
        return out

    def chunk(self, chunk: dict[str, Any]) -> list[bytes]:
        """The events for one chat chunk."""
        if self.ended:
            return []
        err = chunk.get("error")
        if isinstance(err, dict) and err.get("code") == "upstream_stream_interrupted":  # the gateway's own
            return self.error(err)
        out = self._start(chunk.get("id"))
        for choice in _list(chunk.get("choices")):
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            if isinstance(choice.get("delta"), dict):
                out += self._delta(choice["delta"])
            if choice.get("finish_reason") is not None:
                self.finish = choice["finish_reason"]
            if isinstance(choice.get("stop_sequence"), str):
                self.stop_sequence = choice["stop_sequence"]
        receipt = chunk.get("switchboard")  # the gateway's closing usage chunk (an upstream's would lack our id)
        if isinstance(receipt, dict) and receipt.get("request_id") == self.request_id and not chunk.get("choices"):
            out += self.finish_events(receipt)
        return out

    def finish_events(self, receipt: dict[str, Any]) -> list[bytes]:
        out = self._start(None) + self._close_block()
        self.ended = True
        usage = usage_block(receipt["prompt_tokens"], receipt["completion_tokens"],
                            receipt.get("cached_tokens", 0), receipt.get("cache_write_tokens", 0))
        out.append(event("message_delta", {"type": "message_delta",
                                           "delta": {"stop_reason": stop_reason(self.finish, self.stop_sequence),
                                                     "stop_sequence": self.stop_sequence},
                                           "usage": usage}))
        out.append(b": switchboard " + json.dumps(receipt, separators=(",", ":")).encode() + b"\n\n")
        out.append(event("message_stop", {"type": "message_stop"}))
        return out

    def error(self, err: dict[str, Any]) -> list[bytes]:
        self.ended = True
        out = self._start(None)
        out.append(event("error", {"type": "error", "error": {"type": "api_error",
                                                              "message": str(err.get("message") or "")[:600],
                                                              "code": err.get("code")}}))
        return out


def parse_sse_item(item: bytes) -> dict[str, Any] | None:
    """One item the chat stream yields (`data: {...}\\n\\n`, a `: comment`, or `data: [DONE]`) as its chunk dict;
    None for comments and the end marker."""
    text = item.decode("utf-8", "replace").strip()
    if not text.startswith("data:"):
        return None
    payload = text[5:].strip()
    if payload == "[DONE]":
        return None
    try:
        value = json.loads(payload)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def translate_stream(items: Iterator[bytes], translator: StreamTranslator) -> Iterator[bytes]:
    for item in items:
        chunk = parse_sse_item(item)
        if chunk is None:
            if item.startswith(b": switchboard "):
                # a stream that ended in an error carries its (refunded) receipt as a comment
                yield item
            continue
        yield from translator.chunk(chunk)
