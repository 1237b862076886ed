"""OpenAI Responses API <-> chat completions, both ways, for providers that do not speak the Responses API.

`to_chat` turns a validated request into a chat-completions body (the one the gateway counts, prices and routes)
and lists, by field path, everything a chat provider cannot be given (`refused`): a request holding any of it is
refused with 400 `unsupported_parameter` on a translated route — nothing is dropped silently. `from_chat` turns a
chat.completion into a response object (services/responses_stream.py turns chat chunks into Responses' typed events).
Pure rules: no Flask, no database, no network."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from webapp.api.schemas import responses as rs
from webapp.errors import AppError

# Top-level fields with a chat counterpart of the same name and meaning.
_SAME_NAME = ("temperature", "top_p", "parallel_tool_calls", "user", "service_tier", "prompt_cache_key",
              "safety_identifier")
# Undeclared fields whose value changes nothing when it is the default.
_DEFAULTS_OK: dict[str, tuple[Any, ...]] = {"truncation": (None, "disabled"), "include": (None, []),
                                            "background": (None, False)}


@dataclass(frozen=True)
class Translation:
    chat: dict[str, Any]  # the chat-completions body
    refused: list[tuple[str, str]] = field(default_factory=list)  # (field path, what it is)


def unsupported(param: str, what: str) -> AppError:
    return AppError(f"`{param}` ({what}) cannot be translated for a provider without the Responses API; use a "
                    "provider whose preset speaks it, or leave it out.", code="unsupported_parameter", status=400,
                    field=param)


def refusal(translation: Translation) -> AppError | None:
    """The 400 for the first field a translated route cannot carry; None when everything translates."""
    if not translation.refused:
        return None
    return unsupported(*translation.refused[0])


def to_chat(req: rs.ResponsesRequest) -> Translation:
    """The chat body for `req` and what cannot be carried to a chat provider."""
    refused: list[tuple[str, str]] = []
    messages: list[dict[str, Any]] = []
    if req.instructions:
        messages.append({"role": "system", "content": req.instructions})
    if isinstance(req.input, str):
        messages.append({"role": "user", "content": req.input})
    else:
        for i, item in enumerate(req.input):
            _item(item, f"input[{i}]", messages, refused)
    if not messages and refused:  # nothing a chat provider could be asked: refused before anything is counted
        raise unsupported(*refused[0])
    chat: dict[str, Any] = {"model": req.model, "messages": messages}
    if req.stream:
        chat["stream"] = True
        chat["stream_options"] = {"include_usage": True}
    if req.max_output_tokens is not None:
        chat["max_tokens"] = req.max_output_tokens
    for name in _SAME_NAME:
        value = getattr(req, name, None) if name in type(req).model_fields else (req.model_extra or {}).get(name)
        if value is not None:
            chat[name] = value
    if req.tools:
        chat["tools"] = [_tool(tool, f"tools[{i}]", refused) for i, tool in enumerate(req.tools)]
    if req.tool_choice is not None:
        chat["tool_choice"] = _tool_choice(req.tool_choice, refused)
    _text(req.text, chat, refused)
    if req.reasoning is not None:
        if req.reasoning.effort is not None:
            chat["reasoning_effort"] = req.reasoning.effort
        if req.reasoning.summary is not None:
            refused.append(("reasoning.summary", "reasoning summaries"))
        refused.extend((f"reasoning.{k}", "an unknown field") for k in (req.reasoning.model_extra or {}))
    if req.metadata and req.metadata.get("task"):
        chat["metadata"] = {"task": req.metadata["task"]}  # routing only; the rest is echoed in the answer
    if req.previous_response_id is not None:
        refused.append(("previous_response_id", "state kept by the provider"))
    if req.store:
        refused.append(("store", "responses stored by the provider"))
    for name, value in (req.model_extra or {}).items():
        if name in _SAME_NAME:
            continue
        if name in _DEFAULTS_OK and value in _DEFAULTS_OK[name]:
            continue
        refused.append((name, "a field chat completions have no counterpart for"))
    return Translation(chat, refused)


def _item(item: Any, where: str, messages: list[dict[str, Any]], refused: list[tuple[str, str]]) -> None:
    if isinstance(item, rs.ResponseMessageItem):
        _refuse_extra(item, where, refused, allowed=("id", "status"))
        role = "system" if item.role == "developer" else item.role
        messages.append({"role": role, "content": _content(item.content, role, f"{where}.content", refused)})
    elif isinstance(item, rs.ResponseFunctionCallItem):
        _refuse_extra(item, where, refused, allowed=("id", "status"))
        call = {"id": item.call_id, "type": "function",
                "function": {"name": item.name, "arguments": item.arguments}}
        last = messages[-1] if messages else None
        if last is not None and last["role"] == "assistant":
            last.setdefault("tool_calls", []).append(call)  # text then calls, or several calls: one message
        else:
            messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
    elif isinstance(item, rs.ResponseFunctionCallOutputItem):
        _refuse_extra(item, where, refused, allowed=("id", "status"))
        output = _content(item.output, "tool", f"{where}.output", refused)
        messages.append({"role": "tool", "tool_call_id": item.call_id, "content": output})
    else:
        refused.append((f"{where}.type", f"an input item of type {item.type!r}"))


def _refuse_extra(obj: Any, where: str, refused: list[tuple[str, str]], allowed: tuple[str, ...] = ()) -> None:
    for name in obj.model_extra or {}:
        if name not in allowed:
            refused.append((f"{where}.{name}", "an unknown field"))


def _content(content: str | list[Any], role: str, where: str, refused: list[tuple[str, str]]) -> Any:
    """A message's content as chat content: a string stays one; parts become chat parts (text, image_url). Roles
    other than user take text only, joined (chat providers do not all accept parts there)."""
    if isinstance(content, str):
        return content
    parts: list[dict[str, Any]] = []
    for j, part in enumerate(content):
        at = f"{where}[{j}]"
        if isinstance(part, (rs.ResponseInputText, rs.ResponseOutputTextPart)):
            _refuse_extra(part, at, refused, allowed=("annotations", "logprobs"))
            parts.append({"type": "text", "text": part.text})
        elif isinstance(part, rs.ResponseRefusalPart):
            parts.append({"type": "text", "text": part.refusal})
        elif isinstance(part, rs.ResponseInputImage) and role == "user":
            _refuse_extra(part, at, refused)
            if part.file_id is not None or not part.image_url:
                refused.append((f"{at}.file_id", "an uploaded file"))
                continue
            image: dict[str, Any] = {"url": part.image_url}
            if part.detail is not None:
                image["detail"] = part.detail
            parts.append({"type": "image_url", "image_url": image})
        else:
            refused.append((f"{at}.type", f"a content part of type {part.type!r} in a {role} message"))
    if role == "user":
        return parts
    return "".join(p["text"] for p in parts if p["type"] == "text")


def _tool(tool: Any, where: str, refused: list[tuple[str, str]]) -> dict[str, Any]:
    if not isinstance(tool, rs.ResponseFunctionTool):
        refused.append((f"{where}.type", f"the built-in tool {tool.type!r}"))
        return tool.model_dump(by_alias=True, exclude_none=True)  # member mode refuses it as unpriceable
    _refuse_extra(tool, where, refused)
    function: dict[str, Any] = {"name": tool.name}
    if tool.description is not None:
        function["description"] = tool.description
    function["parameters"] = tool.parameters if tool.parameters is not None else {"type": "object",
                                                                                 "properties": {}}
    if tool.strict is not None:
        function["strict"] = tool.strict
    return {"type": "function", "function": function}


def _tool_choice(choice: Any, refused: list[tuple[str, str]]) -> Any:
    if isinstance(choice, str):
        return choice
    if choice.type == "function" and choice.name:
        return {"type": "function", "function": {"name": choice.name}}
    refused.append(("tool_choice.type", f"a tool choice of type {choice.type!r}"))
    return "auto"


def _text(text: rs.ResponseTextConfig | None, chat: dict[str, Any], refused: list[tuple[str, str]]) -> None:
    if text is None:
        return
    _refuse_extra(text, "text", refused)
    fmt = text.format
    if fmt is None or fmt.type == "text":
        return
    if fmt.type == "json_object":
        chat["response_format"] = {"type": "json_object"}
        return
    if fmt.schema_ is None:
        refused.append(("text.format.schema", "a json_schema format needs its schema"))
        return
    schema: dict[str, Any] = {"name": fmt.name or "response", "schema": fmt.schema_}
    if fmt.description is not None:
        schema["description"] = fmt.description
    if fmt.strict is not None:
        schema["strict"] = fmt.strict
    chat["response_format"] = {"type": "json_schema", "json_schema": schema}


# -- the answer -----------------------------------------------------------------------------------------------------

def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


def usage(tokens_in: int, tokens_out: int, cached: int = 0, reasoning: int = 0,
          estimated: bool = False) -> dict[str, Any]:
    """A Responses `usage` object for the tokens charged."""
    return {"input_tokens": tokens_in, "input_tokens_details": {"cached_tokens": cached},
            "output_tokens": tokens_out, "output_tokens_details": {"reasoning_tokens": reasoning},
            "total_tokens": tokens_in + tokens_out, "switchboard_estimated": estimated}


def skeleton(req: rs.ResponsesRequest, response_id: str, created_at: int, model: str,
             status: str = "in_progress") -> dict[str, Any]:
    """A response object echoing the request's settings, with no output yet."""
    raw = req.model_dump(by_alias=True, exclude_none=True)
    return {
        "id": response_id, "object": "response", "created_at": created_at, "status": status, "model": model,
        "output": [], "usage": None, "error": None, "incomplete_details": None,
        "instructions": req.instructions, "max_output_tokens": req.max_output_tokens,
        "parallel_tool_calls": req.parallel_tool_calls if req.parallel_tool_calls is not None else True,
        "temperature": req.temperature, "top_p": req.top_p, "tool_choice": raw.get("tool_choice", "auto"),
        "tools": raw.get("tools", []), "text": raw.get("text", {"format": {"type": "text"}}),
        "reasoning": raw.get("reasoning", {"effort": None, "summary": None}), "store": False,
        "metadata": req.metadata or {}, "previous_response_id": None, "truncation": "disabled", "user": req.user,
    }


def finish_status(finish: Any) -> tuple[str, dict[str, Any] | None]:
    if finish == "length":
        return "incomplete", {"reason": "max_output_tokens"}
    if finish == "content_filter":
        return "incomplete", {"reason": "content_filter"}
    return "completed", None


def message_item(text: str, status: str = "completed", item_id: str | None = None) -> dict[str, Any]:
    return {"type": "message", "id": item_id or new_id("msg"), "status": status, "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]}


def call_item(call_id: str, name: str, arguments: str, status: str = "completed",
              item_id: str | None = None) -> dict[str, Any]:
    return {"type": "function_call", "id": item_id or new_id("fc"), "call_id": call_id, "name": name,
            "arguments": arguments, "status": status}


def from_chat(completion: dict[str, Any], req: rs.ResponsesRequest, response_id: str,
              created_at: int, charged: dict[str, Any]) -> dict[str, Any]:
    """A response object from a chat.completion; `charged`: the `usage` object of what was charged."""
    choices = completion.get("choices")
    choice = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else {}
    message = choice.get("message") if isinstance(choice.get("message"), dict) else {}
    output: list[dict[str, Any]] = []
    text = _text_of(message.get("content"))
    if text:
        output.append(message_item(text))
    if isinstance(message.get("refusal"), str) and message["refusal"]:
        output.append({"type": "message", "id": new_id("msg"), "status": "completed", "role": "assistant",
                       "content": [{"type": "refusal", "refusal": message["refusal"]}]})
    calls = message.get("tool_calls")
    for call in calls if isinstance(calls, list) else []:
        fn = call.get("function") if isinstance(call, dict) else None
        if isinstance(fn, dict):
            output.append(call_item(str(call.get("id") or new_id("call")), str(fn.get("name") or ""),
                                    _arguments(fn.get("arguments"))))
    status, incomplete = finish_status(choice.get("finish_reason"))
    out = skeleton(req, response_id, created_at, str(completion.get("model") or req.model), status)
    out.update(output=output, usage=charged, incomplete_details=incomplete)
    return out


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(p.get("text") or "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def _arguments(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value if value is not None else {}, separators=(",", ":"))
