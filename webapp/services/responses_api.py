"""POST /v1/responses: OpenAI's Responses API on the chat path.

The request is validated (webapp/api/schemas/responses.py), translated into a chat-completions body and run through
`Gateway.chat` — so modes, routing, pins, fallbacks, limits, reservations, receipts, logs and credits are the chat
route's, exactly. `ResponsesKind` picks each route's adapter: a preset that speaks the Responses API
(`llm_providers.responses_api`) gets the client's own body (providers/openai_responses.py); any other provider,
Anthropic included, gets the translation, or a 400 `unsupported_parameter` naming the first field it cannot carry.
The answer is turned back into a response object, or a stream of Responses' typed events.

State: Switchboard keeps no responses. `previous_response_id` and `store: true` reach only a provider that keeps
them itself, with the caller's own key (BYOK), and `stored` reads or deletes such a response there with that key;
member mode refuses them (the operator's provider account would hold
state the member cannot reach, and a prompt the gateway cannot count), as it refuses `conversation`, `prompt`
templates and `background` runs. A passthrough in member mode is sent with `store: false` unless told otherwise."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from webapp.api.schemas import parse
from webapp.api.schemas.responses import ResponsesRequest
from webapp.errors import AppError, NotFound
from webapp.providers import get_adapter
from webapp.providers.base import Adapter, UpstreamFailure
from webapp.providers.forced_tool import ForcedToolAdapter
from webapp.providers.openai_responses import ResponsesPassthrough, stored_response
from webapp.services import responses_translate as tr
from webapp.services import router
from webapp.services.responses_stream import StreamTranslator

RESPONSE_ID = re.compile(r"[A-Za-z0-9_-]{1,200}")

# Member mode cannot count or reach what these bring in from the provider's side.
_STATEFUL = {"previous_response_id": "a previous response kept by the provider",
             "conversation": "a conversation kept by the provider",
             "prompt": "a prompt template kept by the provider"}


class ResponsesKind:
    """The gateway hook of one /v1/responses request (see Receipt.kind)."""

    def __init__(self, raw: dict[str, Any], translation: tr.Translation) -> None:
        self.raw, self.translation = raw, translation

    def adapter(self, route: Any) -> Adapter:
        if route.rate is not None and getattr(route.rate, "kind", "chat") != "chat":
            raise AppError(f"{route.provider.slug}/{route.model} is an embedding model; call /v1/embeddings.",
                           code="model_not_chat", status=400, field="model")
        if route.provider.responses_api and route.provider.api_style == "openai":
            if route.mode == "member":
                self._member_passthrough_checks()
                raw = {**self.raw, "store": False} if "store" not in self.raw else self.raw
                return ResponsesPassthrough(raw)
            return ResponsesPassthrough(self.raw)
        err = tr.refusal(self.translation)
        if err is not None:
            raise err
        if route.provider.api_style == "anthropic":  # no response_format there: text.format as a forced tool
            return ForcedToolAdapter(get_adapter("anthropic"))
        return get_adapter(route.provider.api_style)

    def _member_passthrough_checks(self) -> None:
        for param, what in self.translation.refused:
            if param.startswith("input"):  # a file, a reasoning item, a reference: input the gateway cannot count
                raise _member_refusal(param, what)
        for name, what in _STATEFUL.items():
            if self.raw.get(name) is not None:
                raise _member_refusal(name, what)
        if self.raw.get("store") is True:
            raise _member_refusal("store", "a response stored in the operator's provider account")
        if self.raw.get("background") not in (None, False):
            raise _member_refusal("background", "a background run, billed after the request ends")


def _member_refusal(name: str, what: str) -> AppError:
    return AppError(f"Member mode cannot use `{name}` ({what}: Switchboard could not count or reach it); use your "
                    "own key (BYOK) with a provider that speaks the Responses API.", code="unsupported_parameter",
                    status=400, field=name)


def _raw_body(body: dict[str, Any]) -> dict[str, Any]:
    """The client's body for a passthrough: as sent, but for metadata.task (Switchboard's routing hint)."""
    raw = dict(body)
    meta = raw.get("metadata")
    if isinstance(meta, dict) and "task" in meta:
        rest = {k: v for k, v in meta.items() if k != "task"}
        if rest:
            raw["metadata"] = rest
        else:
            raw.pop("metadata")
    return raw


@dataclass
class ResponsesResult:
    headers: dict[str, str]
    body: dict[str, Any] | None = None
    stream: Any = None  # an iterable of SSE bytes with close()


def create(gateway: Any, claims: Any, body: Any, task_header: str | None, byok: Any,
           team: str | None) -> ResponsesResult:
    """One /v1/responses request: JSON or a stream of typed events."""
    req = parse(ResponsesRequest, body, v1=True)
    translation = tr.to_chat(req)
    kind = ResponsesKind(_raw_body(body), translation)
    result = gateway.chat(claims, translation.chat, task_header, byok, team, kind=kind)
    response_id = tr.new_id("resp")
    created = int(time.time())
    if result.stream is not None:
        events = ResponsesStream(result.stream, StreamTranslator(req, response_id, created, req.model))
        return ResponsesResult(result.receipt.headers(final=False), stream=events)
    charged = charged_usage(result.receipt.as_dict())
    answer = result.body or {}
    if isinstance(answer.get("_responses"), dict):
        out = dict(answer["_responses"])
        out["usage"] = {**(out["usage"] if isinstance(out.get("usage"), dict) else {}), **charged}
    else:
        out = tr.from_chat(answer, req, response_id, created, charged)
    return ResponsesResult(result.receipt.headers(), body=out)


def stored(gateway: Any, claims: Any, response_id: str, byok: Any, team: str | None, method: str) -> dict[str, Any]:
    """GET / DELETE /v1/responses/{id}: a response kept by a provider that speaks the Responses API, read or deleted
    there with the caller's own key (X-BYOK-API-Key and X-BYOK-Provider). Member mode never stores one."""
    if byok is None:
        raise NotFound("Switchboard keeps no responses, and member mode never asks a provider to keep one. A "
                       "response stored with your own key is read with it: send X-BYOK-API-Key and X-BYOK-Provider.",
                       code="response_not_found")
    if not RESPONSE_ID.fullmatch(response_id):
        raise NotFound("No such response.", code="response_not_found")
    ctx, catalog = gateway.context(claims, None, team, billing=False)
    plan = router.plan(f"{byok.provider or ''}/stored-response", None, byok, ctx, catalog, gateway.settings,
                       gateway.keyring)
    route = plan.routes[0]
    if not (route.provider.responses_api and route.provider.api_style == "openai"):
        raise NotFound(f"{route.provider.name} does not keep responses (its preset does not speak the Responses API).",
                       code="response_not_found")
    try:
        return stored_response(route.target, response_id, method)
    except UpstreamFailure as exc:
        if exc.kind == "blocked_address":
            raise AppError("The base URL points to a private or internal address, which is not allowed.",
                           code="base_url_not_allowed", status=400, field="X-BYOK-Base-URL") from None
        if exc.status == 404:
            raise NotFound(f"{route.provider.name} has no response {response_id}.", code="response_not_found") from None
        if exc.status in (401, 403):
            raise AppError(f"{route.provider.name} refused the API key.", code="upstream_auth_failed",
                           status=400) from None
        raise AppError(f"{route.provider.name} could not be asked for the response.", code="upstream_error",
                       status=502) from None


def charged_usage(receipt: dict[str, Any]) -> dict[str, Any]:
    """The Responses `usage` of what a receipt charged."""
    return tr.usage(int(receipt.get("prompt_tokens") or 0), int(receipt.get("completion_tokens") or 0),
                    int(receipt.get("cached_tokens") or 0), int(receipt.get("reasoning_tokens") or 0),
                    receipt.get("usage") != "measured")


def sse(event: dict[str, Any]) -> bytes:
    """One typed event: `event: <type>` and its JSON `data:` line."""
    data = json.dumps(event, separators=(",", ":"), ensure_ascii=False)
    return f"event: {event.get('type', 'message')}\ndata: {data}\n\n".encode()


class ResponsesStream:
    """The gateway's chat stream (SSE bytes) read back into chunks and re-emitted as Responses events: the
    provider's own events for a passthrough (its final event carrying the charged usage and the receipt), the
    translated ones otherwise. close() closes the gateway's stream, which settles or refunds."""

    def __init__(self, inner: Any, translator: StreamTranslator) -> None:
        self.inner, self.tr = inner, translator

    def __iter__(self) -> Iterator[bytes]:
        return self._events()

    def close(self) -> None:
        self.inner.close()

    def _chunks(self) -> Iterator[tuple[str, Any]]:
        """("chunk", dict) | ("receipt", dict) | ("done", None) from the gateway's SSE bytes."""
        buffer = b""
        for piece in self.inner:
            buffer += piece
            while b"\n\n" in buffer:
                block, buffer = buffer.split(b"\n\n", 1)
                if block.startswith(b"data: "):
                    payload = block[len(b"data: "):]
                    if payload.strip() == b"[DONE]":
                        yield "done", None
                        return
                    yield "chunk", json.loads(payload)
                elif block.startswith(b": switchboard "):
                    yield "receipt", json.loads(block[len(b": switchboard "):])

    def _events(self) -> Iterator[bytes]:
        passthrough: bool | None = None
        final: dict[str, Any] | None = None  # a passthrough's response.completed, held for the charged usage
        error: dict[str, Any] | None = None
        last_seq = -1
        for what, value in self._chunks():
            if what == "chunk" and passthrough is None:
                passthrough = "_event" in value
                if not passthrough:
                    yield from map(sse, self.tr.start())
            if what == "receipt" or what == "done":
                if error is not None:
                    self.tr.seq = max(self.tr.seq, last_seq + 1)
                    if passthrough is None:
                        yield from map(sse, self.tr.start())
                    yield from map(sse, self.tr.fail(error, value if what == "receipt" else None))
                    error = None
                continue
            if "error" in value and not value.get("choices"):
                error = value["error"] if isinstance(value["error"], dict) else {}
                continue
            if "switchboard" in value:  # the closing usage chunk: the charge is known
                receipt = value["switchboard"]
                if final is not None:
                    response = dict(final.get("response") or {})
                    usage = response.get("usage") if isinstance(response.get("usage"), dict) else {}
                    response.update(usage={**usage, **charged_usage(receipt)}, switchboard=receipt)
                    yield sse({**final, "response": response})
                elif not passthrough:
                    yield from map(sse, self.tr.complete(charged_usage(receipt), receipt))
                continue
            event = value.get("_event")
            if isinstance(event, dict):
                if isinstance(event.get("sequence_number"), int):
                    last_seq = event["sequence_number"]
                if isinstance(event.get("response"), dict) and isinstance(event["response"].get("id"), str):
                    self.tr.response_id = event["response"]["id"]  # a failure names the provider's response
                if event.get("type") in ("response.completed", "response.incomplete"):
                    final = event
                else:
                    yield sse(event)
                continue
            yield from map(sse, self.tr.chunk(value))
