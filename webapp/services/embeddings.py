"""POST /v1/embeddings on the chat path: member mode bills the input tokens at the model's input rate x multiplier.

The request is validated (webapp/api/schemas/embeddings.py) and run through `Gateway.chat` as a chat request whose
one user message stands for the input (so its tokens are what the reservation counts) with an output limit of one
token (an embedding model's output rate is 0 in the seeded rates: nothing is charged for it); modes, routing,
pins, fallbacks, reservations, receipts, logs and credits are the chat route's. `EmbeddingsKind` sends the client's
own body to {base_url}/embeddings of OpenAI-style providers (providers/openai_embeddings.py) and refuses a chat
model and an Anthropic route. The settle uses the provider's `usage.prompt_tokens` (a tiktoken count when it sends
none). A token array counts one token per id."""

from __future__ import annotations

from typing import Any

from webapp.api.schemas import parse
from webapp.api.schemas.embeddings import EmbeddingsRequest
from webapp.errors import AppError
from webapp.providers import get_adapter
from webapp.providers.base import Adapter
from webapp.providers.openai_embeddings import EmbeddingsAdapter


class EmbeddingsKind:
    """The gateway hook of one /v1/embeddings request (see Receipt.kind)."""

    def __init__(self, raw: dict[str, Any], inputs: int) -> None:
        self.raw, self.inputs = raw, inputs

    def adapter(self, route: Any) -> Adapter:
        if route.rate is not None and getattr(route.rate, "kind", "chat") != "embedding":
            raise AppError(f"{route.provider.slug}/{route.model} is not an embedding model.",
                           code="model_not_embedding", status=400, field="model")
        if route.provider.api_style != "openai":
            raise AppError(f"{route.provider.name} does not serve embeddings through Switchboard (only providers "
                           "speaking the OpenAI wire format do).", code="embeddings_not_supported", status=400,
                           field="model")
        return EmbeddingsAdapter(self.raw, self.inputs)


class ChatKind:
    """The chat route's hook: an embedding model is refused there (400 `model_not_chat`), as a chat model is here."""

    def adapter(self, route: Any) -> Adapter:
        if route.rate is not None and getattr(route.rate, "kind", "chat") != "chat":
            raise AppError(f"{route.provider.slug}/{route.model} is an embedding model; call /v1/embeddings.",
                           code="model_not_chat", status=400, field="model")
        return get_adapter(route.provider.api_style)


CHAT_KIND = ChatKind()


def _stand_in(value: str | list[Any]) -> tuple[str, int]:
    """(text whose token count stands for the input, how many embeddings it asks for). Texts are joined; a token
    array becomes one short word per id (" x" is one token in every tiktoken encoding)."""
    if isinstance(value, str):
        return value, 1
    if value and isinstance(value[0], int):
        return " x" * len(value), 1
    texts = [v if isinstance(v, str) else " x" * len(v) for v in value]
    return "\n".join(texts), len(texts)


def create(gateway: Any, claims: Any, body: Any, task_header: str | None, byok: Any,
           team: str | None) -> tuple[dict[str, str], dict[str, Any]]:
    """One /v1/embeddings request: (receipt headers, the embeddings list)."""
    req = parse(EmbeddingsRequest, body, v1=True)
    text, inputs = _stand_in(req.input)
    raw = {k: v for k, v in body.items() if k != "metadata"} if isinstance(body, dict) else {}
    chat = {"model": req.model, "messages": [{"role": "user", "content": text}], "max_tokens": 1}
    meta = body.get("metadata")
    if isinstance(meta, dict) and isinstance(meta.get("task"), str):
        chat["metadata"] = {"task": meta["task"]}
        rest = {k: v for k, v in meta.items() if k != "task"}
        if rest:
            raw["metadata"] = rest
    elif meta is not None:
        raw["metadata"] = meta
    result = gateway.chat(claims, chat, task_header, byok, team, kind=EmbeddingsKind(raw, inputs))
    receipt = result.receipt.as_dict()
    upstream = (result.body or {}).get("_embeddings") or {}
    data = [{**item, "object": "embedding", "index": item.get("index", i)} if isinstance(item, dict) else item
            for i, item in enumerate(upstream.get("data") or [])]
    tokens = int(receipt.get("prompt_tokens") or 0)
    out = {**upstream, "object": "list", "data": data, "model": upstream.get("model") or result.receipt.model,
           "usage": {"prompt_tokens": tokens, "total_tokens": tokens,
                     "switchboard_estimated": receipt.get("usage") != "measured"}}
    return result.receipt.headers(), out
