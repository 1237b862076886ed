"""OpenAI-style embeddings (POST {base_url}/embeddings), for the gateway's chat-shaped accounting.

The gateway runs a /v1/embeddings request as a chat request whose prompt is the input (counted, priced, routed,
settled as one); this adapter sends the client's own embeddings body with the route's model and answers a
chat.completion with no output whose usage is the provider's input count, the embeddings kept under
`_embeddings`."""

from __future__ import annotations

from typing import Any

from webapp.providers.base import Adapter, Target, UpstreamFailure, UpstreamStream
from webapp.providers.openai_compat import OpenAICompatAdapter
from webapp.providers.openai_compat import _headers as openai_headers
from webapp.providers.transport import join_url, protocol_error, read_json, send


class EmbeddingsAdapter(Adapter):
    """One request's adapter: `raw` is the client's embeddings body; `inputs` how many embeddings it asks for."""

    def __init__(self, raw: dict[str, Any], inputs: int) -> None:
        self.raw, self.inputs = raw, inputs

    def complete(self, target: Target, body: dict[str, Any]) -> dict[str, Any]:
        url = join_url(target.base_url, "embeddings")
        resp = send(target, "POST", url, headers=openai_headers(target), json_body={**self.raw,
                                                                                    "model": body["model"]})
        data = read_json(resp, target, url)
        items = data.get("data") if isinstance(data, dict) else None
        if not isinstance(items, list) or len(items) != self.inputs or not all(
                isinstance(it, dict) and isinstance(it.get("embedding"), (list, str)) for it in items):
            raise protocol_error(url, f"answer is not a list of {self.inputs} embedding(s)")
        usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
        prompt = usage.get("prompt_tokens")
        return {"id": "", "object": "chat.completion", "model": data.get("model"),
                "choices": [{"index": 0, "message": {"role": "assistant", "content": ""}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": prompt, "completion_tokens": 0} if prompt is not None else None,
                "_embeddings": data}

    def open_stream(self, target: Target, body: dict[str, Any]) -> UpstreamStream:
        raise UpstreamFailure("protocol", "embeddings are not streamed", retryable=False)

    def list_models(self, target: Target) -> list[str]:
        return OpenAICompatAdapter().list_models(target)
