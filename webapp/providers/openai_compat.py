"""Adapter for OpenAI-compatible upstreams (OpenAI, Groq, Mistral, Ollama, LM Studio, ...): the request body
is passed through untouched, so tools, response_format and any vendor extension keep working."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

from webapp.providers.base import (
    MAX_MODEL_LIST_BYTES,
    Adapter,
    Target,
    UpstreamFailure,
    UpstreamStream,
    with_extra_headers,
)
from webapp.providers.sse import SSEEvent
from webapp.providers.transport import (
    error_body,
    iter_body,
    join_url,
    open_event_stream,
    protocol_error,
    read_json,
    safe_url,
    scrub_body,
    send,
)


def _headers(target: Target, *, stream: bool = False) -> dict[str, str]:
    headers = {"Accept": "text/event-stream" if stream else "application/json"}
    if stream:
        # Compressed SSE would sit in a decompressor buffer; identity keeps chunks flowing as they come.
        headers["Accept-Encoding"] = "identity"
    if target.api_key is not None:
        headers["Authorization"] = f"Bearer {target.api_key}"
    return with_extra_headers(target, headers)


def translate_openai_events(events: Iterable[SSEEvent], url: str = "", secret: str | None = None
                            ) -> Iterator[dict[str, Any]]:
    """OpenAI SSE events → chunk dicts. Ends at [DONE]; a stream that ends without [DONE] is accepted only if a
    finish_reason was seen (some compatible servers omit [DONE]); otherwise it was cut and that is an error."""
    finished = False
    for event in events:
        data = event.data.strip()
        if data == "[DONE]":
            return
        try:
            chunk = json.loads(data)
        except ValueError:
            raise protocol_error(url, "stream sent an event that is not JSON") from None
        if not isinstance(chunk, dict):
            raise protocol_error(url, "stream sent an event that is not a JSON object")
        if "error" in chunk or event.event == "error":
            body = error_body(data.encode("utf-8"), 200, secret)
            raise UpstreamFailure("protocol", f"stream error from upstream: {body['error']['message'][:300]}",
                                  retryable=False, error_body=body)
        if any(isinstance(c, dict) and c.get("finish_reason") for c in chunk.get("choices") or []):
            finished = True
        yield chunk
    if not finished:
        raise protocol_error(url, "stream ended before [DONE]")


class OpenAICompatAdapter(Adapter):
    """POST {base_url}/chat/completions with a Bearer key; GET {base_url}/models."""

    def complete(self, target: Target, body: dict[str, Any]) -> dict[str, Any]:
        url = join_url(target.base_url, "chat/completions")
        resp = send(target, "POST", url, headers=_headers(target), json_body=body)
        data = read_json(resp, target, url)
        if not isinstance(data, dict) or not isinstance(data.get("choices"), list):
            raise protocol_error(url, "answer is not a chat.completion object")
        return data

    def open_stream(self, target: Target, body: dict[str, Any]) -> UpstreamStream:
        url = join_url(target.base_url, "chat/completions")
        if body.get("stream") is not True:
            body = {**body, "stream": True}
        return open_event_stream(target, url, _headers(target, stream=True), body, translate_openai_events)

    def list_models(self, target: Target) -> list[str]:
        url = join_url(target.base_url, "models")
        data = read_model_list(send(target, "GET", url, headers=_headers(target)), target, url)
        return model_ids(data, url)


def read_model_list(resp: Any, target: Target, url: str) -> Any:
    """A model list's JSON, read only up to MAX_MODEL_LIST_BYTES (then a protocol error), connection released."""
    out = bytearray()
    try:
        for data in iter_body(resp, target, url):
            out += data
            if len(out) > MAX_MODEL_LIST_BYTES:
                raise UpstreamFailure("protocol", f"the model list from {safe_url(url)} is too large",
                                      retryable=False)
    finally:
        resp.close()
    try:
        parsed = json.loads(out)
    except ValueError:
        raise UpstreamFailure("protocol", f"{safe_url(url)} answered with invalid JSON", retryable=False) from None
    return scrub_body(parsed, target)


def model_ids(data: Any, url: str) -> list[str]:
    """Ids from a `{"data": [{"id": ...}]}` list (a bare list is accepted too)."""
    items = data.get("data") if isinstance(data, dict) else data
    if not isinstance(items, list):
        raise protocol_error(url, "model list has no data array")
    return [str(m["id"]) for m in items if isinstance(m, dict) and isinstance(m.get("id"), str)]
