"""Validation of an OpenAI chat-completions body. Unknown fields pass through to the provider untouched."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from webapp.errors import AppError

ROLES = {"system", "developer", "user", "assistant", "tool", "function"}
# Model names travel into response headers and logs: printable ASCII without spaces, as every provider's ids are.
MODEL_NAME = re.compile(r"[!-~]{1,200}")
LIMIT_FIELDS = ("max_completion_tokens", "max_tokens", "max_output_tokens")
MAX_CHOICES = 128


@dataclass(frozen=True)
class ChatRequest:
    body: dict[str, Any]
    model: str
    messages: list[dict[str, Any]]
    stream: bool
    include_usage: bool
    max_tokens: int | None  # the smallest limit the client sent in any field
    task: str | None
    n: int = 1


def _invalid(message: str, param: str, code: str = "invalid_value") -> AppError:
    return AppError(message, code=code, status=400, field=param)


def parse(body: Any, header_task: str | None, *, max_messages: int = 1000,
          max_tokens_ceiling: int = 262_144) -> ChatRequest:
    if not isinstance(body, dict):
        raise _invalid("The request body must be a JSON object.", "body", "invalid_json")
    model = body.get("model")
    if not isinstance(model, str) or not MODEL_NAME.fullmatch(model.strip()):
        raise _invalid("`model` must be a model id: 1 to 200 printable ASCII characters, no spaces.", "model")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _invalid("`messages` must be a non-empty array.", "messages")
    if len(messages) > max_messages:
        raise _invalid(f"`messages` may hold at most {max_messages} items.", "messages")
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict) or msg.get("role") not in ROLES:
            raise _invalid(f"messages[{i}] must be an object with a valid role.", f"messages[{i}].role")
        content = msg.get("content")
        if content is not None and not isinstance(content, (str, list)):
            raise _invalid(f"messages[{i}].content must be a string or an array of parts.",
                           f"messages[{i}].content")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise _invalid("`stream` must be true or false.", "stream")
    limits = []
    for name in LIMIT_FIELDS:  # every one: a provider may read any of them
        value = body.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= max_tokens_ceiling:
            raise _invalid(f"`{name}` must be an integer from 1 to {max_tokens_ceiling}.", name)
        limits.append(value)
    max_tokens = min(limits) if limits else None
    n = body.get("n", 1)
    if n is None:
        n = 1
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_CHOICES:
        raise _invalid(f"`n` must be an integer from 1 to {MAX_CHOICES}.", "n")
    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise _invalid("`stream_options` must be an object.", "stream_options")
    include_usage = bool(options and options.get("include_usage"))
    metadata = body.get("metadata")
    task = header_task
    if task is None and isinstance(metadata, dict) and isinstance(metadata.get("task"), str):
        task = metadata["task"]
    if task is not None and (not task.strip() or len(task) > 64 or "\x00" in task):
        raise _invalid("The task name must be 1 to 64 characters.", "metadata.task")
    return ChatRequest(body, model.strip(), messages, stream, include_usage, max_tokens, task, n)
