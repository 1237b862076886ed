"""POST /v1/messages and /v1/messages/count_tokens: Anthropic's Messages API on top of the chat pipeline.

A Messages request is validated (webapp/api/schemas/messages.py), translated into a chat-completions request
(services/messages_translate.py) and run through `Gateway.chat`: the same modes, routing, pins, fallbacks, limits,
reservation, settle, receipt and log as /v1/chat/completions. The chat answer is translated back into a Messages
`message` or Messages SSE events. An Anthropic provider receives the client's Messages body itself (MessagesKind):
only its model and output limit are Switchboard's. count_tokens counts the translated prompt with tiktoken, offline,
as the gateway's reservation does: an estimate (exact only as far as tiktoken matches the provider's tokenizer)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from webapp.api.schemas import parse
from webapp.api.schemas.messages import CountTokensRequest, MessagesRequest
from webapp.errors import AppError, RateLimited
from webapp.providers import get_adapter
from webapp.providers.anthropic import AnthropicAdapter
from webapp.providers.base import Adapter, Target, UpstreamStream
from webapp.repos import context as context_repo
from webapp.services import budget, messages_translate, router, tokens

# Anthropic's error types by status (https://docs.anthropic.com/en/api/errors).
ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 402: "billing_error",
               403: "permission_error", 404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error",
               500: "api_error", 502: "api_error", 503: "overloaded_error", 504: "api_error", 529: "overloaded_error"}


def error_body(status: int, code: str, message: str) -> dict[str, Any]:
    """Anthropic's error shape, with Switchboard's stable code beside the type."""
    kind = ERROR_TYPES.get(status) or ("api_error" if status >= 500 else "invalid_request_error")
    return {"type": "error", "error": {"type": kind, "message": message, "code": code}}


def is_messages_path(path: str) -> bool:
    """/v1/messages and its sub-paths, as sent (doubled slashes included): errors there take Anthropic's shape."""
    parts = [p for p in path.split("/") if p]
    return parts[:2] == ["v1", "messages"]


@dataclass
class MessagesResult:
    headers: dict[str, str]
    body: dict[str, Any] | None = None
    stream: Any = None


class _Events:
    """The Messages event stream over the chat stream. Closing it closes the chat stream (which closes the
    reservation and the stream slot even when the client left before the first byte)."""

    def __init__(self, inner: Any, translator: messages_translate.StreamTranslator) -> None:
        self.inner = inner
        self.gen = messages_translate.translate_stream(_lazy(inner), translator)

    def __iter__(self) -> Iterator[bytes]:
        return self.gen

    def close(self) -> None:
        self.gen.close()
        self.inner.close()


def _lazy(inner: Any) -> Iterator[bytes]:
    yield from inner


class MessagesPassthrough(Adapter):
    """An Anthropic provider gets the Messages body as the client sent it (cache_control, system blocks, tool_result
    is_error and all): only the model (the route's) and max_tokens (the limit the reservation pays for, in member
    mode) are Switchboard's, and its own `metadata.task` is removed. The answer comes back chat-shaped, like every
    route's, for the one pipeline."""

    def __init__(self, raw: dict[str, Any]) -> None:
        self.raw = raw

    def request(self, body: dict[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in self.raw.items() if k != "stream"}
        out["model"] = body["model"]
        if isinstance(body.get("max_tokens"), int):
            out["max_tokens"] = body["max_tokens"]
        meta = out.get("metadata")
        if isinstance(meta, dict) and "task" in meta:
            rest = {k: v for k, v in meta.items() if k != "task"}
            if rest:
                out["metadata"] = rest
            else:
                out.pop("metadata")
        return out

    def complete(self, target: Target, body: dict[str, Any]) -> dict[str, Any]:
        return _ANTHROPIC.complete_messages(target, self.request(body))

    def open_stream(self, target: Target, body: dict[str, Any]) -> UpstreamStream:
        return _ANTHROPIC.open_messages_stream(target, self.request(body))

    def list_models(self, target: Target) -> list[str]:
        return _ANTHROPIC.list_models(target)


_ANTHROPIC = AnthropicAdapter()


class MessagesKind:
    """The gateway hook of one /v1/messages request (Receipt.kind): the adapter for each route tried."""

    def __init__(self, raw: dict[str, Any]) -> None:
        self.raw = raw

    def adapter(self, route: Any) -> Adapter:
        if route.rate is not None and getattr(route.rate, "kind", "chat") != "chat":
            raise AppError(f"{route.provider.slug}/{route.model} is an embedding model; call /v1/embeddings.",
                           code="model_not_chat", status=400, field="model")
        if route.provider.api_style == "anthropic":
            return MessagesPassthrough(self.raw)
        return get_adapter(route.provider.api_style)


def _chat_body(req: MessagesRequest, raw: dict[str, Any]) -> dict[str, Any]:
    body = messages_translate.to_chat(raw)
    if req.stream:
        body["stream_options"] = {"include_usage": True}  # the last chunk carries usage and the receipt
    return body


def create(gateway: Any, claims: dict[str, Any], raw: Any, task: str | None, byok: Any,
           team: str | None) -> MessagesResult:
    req = parse(MessagesRequest, raw, v1=True)
    result = gateway.chat(claims, _chat_body(req, raw), task, byok, team, kind=MessagesKind(raw))
    receipt = result.receipt
    model = receipt.model or req.model
    if result.stream is not None:
        translator = messages_translate.StreamTranslator(model, receipt.request_id, receipt.tokens_in)
        return MessagesResult(receipt.headers(final=False), stream=_Events(result.stream, translator))
    body = messages_translate.from_chat(result.body or {}, model, receipt.request_id, receipt.as_dict())
    return MessagesResult(receipt.headers(), body=body)


def embedding_only(model: str, catalog: Any) -> bool:
    """True when every offered model the name resolves to (`provider/model`, or a bare model on each provider
    offering it) is an embedding model: a request for it is refused on every chat-shaped route."""
    explicit, bare = router.split_model(model, catalog)
    slugs = [explicit] if explicit else catalog.providers_offering(bare)
    rates = [rate for slug in slugs if (rate := router.offered_rate(catalog, slug, bare)) is not None]
    return bool(rates) and all(getattr(rate, "kind", "chat") != "chat" for rate in rates)


def count_tokens(gateway: Any, claims: dict[str, Any], raw: Any, team: str | None) -> dict[str, Any]:
    """The prompt's tokens, counted as the reservation counts them (messages, system, tools, tool_choice), with
    tiktoken's encoding for the model: o200k_base for OpenAI's current families, cl100k_base (an approximation)
    for every other vendor's. The caller is authenticated and still active, and the call counts against the
    per-minute limit; nothing is charged or logged."""
    req = parse(CountTokensRequest, raw, v1=True)
    s = gateway.settings  # counting costs CPU: it counts against the caller's per-minute limit like a request
    admission = context_repo.Admission(s.rate_limit_per_minute, s.max_concurrent_streams, s.stream_stale_seconds, None)
    ctx, catalog = gateway.context(claims, admission, team, billing=False)
    verdict = ctx.admit or {}
    if not verdict.get("ok"):
        raise RateLimited(f"Too many requests (at most {s.rate_limit_per_minute} a minute).", code="rate_limited",
                          headers={"Retry-After": str(verdict.get("retry_after", 1))})
    if ctx.team_refusal:
        raise AppError("You are not a member of the team this request names.", code=ctx.team_refusal, status=403)
    model = req.model.strip()
    if embedding_only(model, catalog):  # as /v1/messages refuses it (MessagesKind), before counting anything
        raise AppError(f"{model} is an embedding model; call /v1/embeddings.", code="model_not_chat", status=400,
                       field="model")
    body = messages_translate.to_chat({**raw, "max_tokens": 1})
    counted = budget.prompt_tokens(body, body["messages"], model)
    return {"input_tokens": counted, "switchboard_estimated": True,
            "encoding": tokens.encoding_name_for_model(model)}
