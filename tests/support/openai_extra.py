"""The fake OpenAI upstream's further routes: POST /v1/responses (JSON and its typed SSE events) and POST
/v1/embeddings, with the same deterministic rules as its chat route (tests/support/upstreams.py).

Responses: input tokens = words of `instructions` and of every text in `input` (strings, input_text/output_text
parts, function_call_output outputs); the reply is REPLY cut at `max_output_tokens` (status incomplete); with
function tools (tool_choice not "none") and no function_call_output as the last item, one function_call with
arguments {"echo": <last user text>}. Usage reports cached (`cache_read_tokens`) and reasoning
(`reasoning_tokens`, inside output_tokens) as OpenAI does. Behaviours apply (status, no_usage, cut, error_event).

Stored responses: GET and DELETE /v1/responses/resp_fake answer (any other id is a 404).

Embeddings: one vector per input, [words or ids, 0.5, 0.25] (or `dimensions` numbers), base64 float32 with
encoding_format base64; prompt_tokens = words of the texts plus the ids of the token arrays."""

from __future__ import annotations

import base64
import json
import struct
from typing import Any

from tests.support.upstreams import CREATED, Behaviour, OpenAIUpstream, RecordedRequest, _Handler, words


def handle(up: OpenAIUpstream, h: _Handler, req: RecordedRequest, b: Behaviour) -> bool:
    if req.method in ("GET", "DELETE") and req.path.startswith("/v1/responses/"):
        response_id = req.path.rsplit("/", 1)[1]
        if response_id != "resp_fake":
            up._send_json(h, 404, up.error_json(404, f"No response found with id '{response_id}'."))
        elif req.method == "DELETE":
            up._send_json(h, 200, {"id": response_id, "object": "response", "deleted": True})
        else:
            body = {"model": "echo-1", "input": "stored"}
            up._send_json(h, 200, response_json(up, body, Behaviour()))
        return True
    if req.method != "POST" or not isinstance(req.body, dict):
        return False
    if req.path == "/v1/responses":
        if req.body.get("stream"):
            up._stream(h, response_events(up, req.body, b), b)
        else:
            up._send_json(h, 200, response_json(up, req.body, b))
        return True
    if req.path == "/v1/embeddings":
        up._send_json(h, 200, embeddings_json(req.body, b))
        return True
    return False


def _texts(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    out: list[str] = []
    if isinstance(value, list):
        for item in value:
            if isinstance(item, dict):
                if isinstance(item.get("text"), str):
                    out.append(item["text"])
                out += _texts(item.get("content"))
                out += _texts(item.get("output"))
    return out


def _last_user_text(items: Any) -> str:
    if isinstance(items, str):
        return items
    for item in reversed(items or []):
        if isinstance(item, dict) and item.get("role") == "user":
            return " ".join(_texts(item.get("content")))
    return ""


def _plan(up: OpenAIUpstream, body: dict[str, Any]) -> tuple[str, Any]:
    items = body.get("input")
    tools = [t for t in body.get("tools") or [] if isinstance(t, dict) and t.get("type") == "function"]
    last = items[-1] if isinstance(items, list) and items else {}
    choice = body.get("tool_choice")
    if tools and choice != "none" and not (isinstance(last, dict) and last.get("type") == "function_call_output"):
        name = choice["name"] if isinstance(choice, dict) and choice.get("name") else tools[0]["name"]
        return "tool", (name, up.tool_args(_last_user_text(items)))
    return "text", up.reply_words(body.get("max_output_tokens"), [])


def _usage(up: OpenAIUpstream, body: dict[str, Any], output: int) -> dict[str, Any]:
    prompt = sum(words(t) for t in [body.get("instructions") or "", *_texts(body.get("input"))])
    reasoning = getattr(up, "reasoning_tokens", 0)
    output += reasoning
    return {"input_tokens": prompt, "input_tokens_details": {"cached_tokens": up.cache_read_tokens},
            "output_tokens": up.reported(output), "output_tokens_details": {"reasoning_tokens": reasoning},
            "total_tokens": prompt + output}


def _response(up: OpenAIUpstream, body: dict[str, Any], b: Behaviour, status: str = "completed") -> dict[str, Any]:
    return {"id": "resp_fake", "object": "response", "created_at": CREATED, "status": status,
            "model": body.get("model"), "output": [], "usage": None, "error": None, "incomplete_details": None,
            "store": body.get("store", True), "tools": body.get("tools") or [], "tool_choice": "auto",
            "parallel_tool_calls": True, "metadata": body.get("metadata") or {}}


def response_json(up: OpenAIUpstream, body: dict[str, Any], b: Behaviour) -> dict[str, Any]:
    kind, plan = _plan(up, body)
    out = _response(up, body, b)
    if kind == "tool":
        name, args = plan
        out["output"] = [{"type": "function_call", "id": "fc_fake", "call_id": "call_fake_1", "name": name,
                          "arguments": args, "status": "completed"}]
        produced = words(args)
    else:
        ws, ended = plan
        out["output"] = [{"type": "message", "id": "msg_fake", "status": "completed", "role": "assistant",
                          "content": [{"type": "output_text", "text": " ".join(ws), "annotations": []}]}]
        produced = len(ws)
        if ended == "max_tokens":
            out["status"], out["incomplete_details"] = "incomplete", {"reason": "max_output_tokens"}
    if not b.no_usage:
        out["usage"] = _usage(up, body, produced)
    return out


def _sse(data: dict[str, Any]) -> bytes:
    return f"event: {data['type']}\ndata: {json.dumps(data)}\n\n".encode()


def response_events(up: OpenAIUpstream, body: dict[str, Any], b: Behaviour) -> list[bytes]:
    final = response_json(up, body, b)
    seq = iter(range(10_000))
    events = [{"type": "response.created", "response": _response(up, body, b, "in_progress")},
              {"type": "response.in_progress", "response": _response(up, body, b, "in_progress")}]
    for index, item in enumerate(final["output"]):
        opened = {**item, "status": "in_progress"}
        if item["type"] == "message":
            text = item["content"][0]["text"]
            opened["content"] = []
            events.append({"type": "response.output_item.added", "output_index": index, "item": opened})
            events.append({"type": "response.content_part.added", "item_id": item["id"], "output_index": index,
                           "content_index": 0, "part": {"type": "output_text", "text": "", "annotations": []}})
            events += [{"type": "response.output_text.delta", "item_id": item["id"], "output_index": index,
                        "content_index": 0, "delta": piece} for piece in up.word_chunks(text.split())]
            events.append({"type": "response.output_text.done", "item_id": item["id"], "output_index": index,
                           "content_index": 0, "text": text})
            events.append({"type": "response.content_part.done", "item_id": item["id"], "output_index": index,
                           "content_index": 0, "part": item["content"][0]})
        else:
            opened["arguments"] = ""
            events.append({"type": "response.output_item.added", "output_index": index, "item": opened})
            args = item["arguments"]
            events += [{"type": "response.function_call_arguments.delta", "item_id": item["id"],
                        "output_index": index, "delta": piece} for piece in (args[:5], args[5:])]
            events.append({"type": "response.function_call_arguments.done", "item_id": item["id"],
                           "output_index": index, "arguments": args})
        events.append({"type": "response.output_item.done", "output_index": index, "item": item})
    kind = "response.completed" if final["status"] == "completed" else "response.incomplete"
    events.append({"type": kind, "response": final})
    return [_sse({**event, "sequence_number": next(seq)}) for event in events]


def embeddings_json(body: dict[str, Any], b: Behaviour) -> dict[str, Any]:
    value = body.get("input")
    inputs = [value] if isinstance(value, str) or (isinstance(value, list) and value
                                                   and isinstance(value[0], int)) else list(value or [])
    dims = body.get("dimensions") if isinstance(body.get("dimensions"), int) else 3
    data, tokens = [], 0
    for i, one in enumerate(inputs):
        count = words(one) if isinstance(one, str) else len(one)
        tokens += count
        vector = [float(count), 0.5, 0.25, *([0.125] * max(0, dims - 3))][:dims]
        embedding: Any = vector
        if body.get("encoding_format") == "base64":
            embedding = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
        data.append({"object": "embedding", "index": i, "embedding": embedding})
    out: dict[str, Any] = {"object": "list", "data": data, "model": body.get("model")}
    if not b.no_usage:
        out["usage"] = {"prompt_tokens": tokens, "total_tokens": tokens}
    return out
