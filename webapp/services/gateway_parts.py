"""The gateway's value types (the receipt every answer carries, the streamed body, the result) and its mapping of
upstream failures and team refusals to the client's errors. Split from gateway.py, which imports them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from webapp.errors import AppError, Forbidden, UpstreamError
from webapp.providers.base import UpstreamFailure
from webapp.redact import redact
from webapp.services import credits, router


@dataclass
class Receipt:
    request_id: str
    mode: str
    provider: str = ""
    model: str = ""
    key_source: str = ""
    credits: int = 0
    reserved: int = 0
    multiplier: Decimal = Decimal(0)
    usage_source: str = ""
    tokens_in: int = 0
    tokens_out: int = 0
    fallback_path: list[str] = field(default_factory=list)
    output_limit: int | None = None  # member mode: the output limit Switchboard wrote upstream (per choice)
    limited_by: str | None = None  # "balance" or "monthly_cap" when that lowered the limit below the default
    shortfall: int = 0  # what the settle could not collect
    holds_reservation: bool = False  # a reservation row exists (even of 0 credits) and must be closed
    api_key_id: str | None = None  # the personal API key the request came with
    team: str | None = None  # the slug of the team the request is billed to
    team_id: str | None = None
    cached_tokens: int = 0  # prompt tokens the upstream served from its cache (charged at the cached-input rate)
    holds_stream_slot: bool = False  # an active_streams row exists and must be released
    cache_write_tokens: int = 0  # prompt tokens written to the provider's cache (charged at the cache-write rate)
    reasoning_tokens: int = 0  # hidden reasoning tokens, part of tokens_out (shown, never charged twice)
    # A request kind other than chat completions (/v1/responses, /v1/embeddings: services/responses_api.py,
    # services/embeddings.py): `kind.adapter(route)` picks each route's adapter (or refuses the route with an
    # AppError); the request itself travels as a chat request, so every rule of this path applies to it.
    kind: Any = field(default=None, repr=False)

    def headers(self, *, final: bool = True) -> dict[str, str]:
        h = {
            "X-Request-Id": self.request_id,
            "X-Switchboard-Mode": self.mode,
            "X-Switchboard-Provider": self.provider,
            "X-Switchboard-Model": self.model,
            "X-Switchboard-Key-Source": self.key_source,
            "X-Switchboard-Multiplier": format(self.multiplier.normalize(), "f"),
            "X-Switchboard-Fallback": " > ".join(self.fallback_path),
        }
        if self.team:
            h["X-Switchboard-Team"] = self.team
        if self.output_limit is not None:
            h["X-Switchboard-Output-Limit"] = str(self.output_limit)
            if self.limited_by:
                h["X-Switchboard-Output-Limit-Reason"] = self.limited_by
        if final:
            h["X-Switchboard-Credits"] = credits.format_credits(self.credits)
            h["X-Switchboard-Usage"] = self.usage_source
        else:
            h["X-Switchboard-Credits-Reserved"] = credits.format_credits(self.reserved)
        return h

    def as_dict(self) -> dict[str, Any]:
        return {"request_id": self.request_id, "mode": self.mode, "provider": self.provider, "model": self.model,
                "credits": credits.format_credits(self.credits),
                "multiplier": format(self.multiplier.normalize(), "f"),
                "usage": self.usage_source, "fallback_path": self.fallback_path,
                "prompt_tokens": self.tokens_in, "completion_tokens": self.tokens_out,
                "cached_tokens": self.cached_tokens, "cache_write_tokens": self.cache_write_tokens,
                "reasoning_tokens": self.reasoning_tokens}


class _StreamBody:
    """The streamed response body. A server closes it without iterating when the client left before the first
    byte; a plain generator would then never run its clean-up, so the reservation and stream slot are closed here."""

    def __init__(self) -> None:
        self.gen: Iterator[bytes] | None = None
        self.started = False
        self.on_close_unstarted: Any = None

    def __iter__(self) -> Iterator[bytes]:
        assert self.gen is not None
        return self.gen

    def close(self) -> None:
        if not self.started and self.on_close_unstarted is not None:
            self.started = True
            self.on_close_unstarted()
        if self.gen is not None:
            self.gen.close()  # type: ignore[attr-defined]


@dataclass
class ChatResult:
    receipt: Receipt
    body: dict[str, Any] | None = None
    stream: Any = None


def client_error(failure: UpstreamFailure, routes: list[router.Route], path: list[str] | None = None) -> AppError:
    """The client's error for the last upstream failure, naming the provider(s) tried and carrying the path."""
    err = upstream_error(failure, routes)
    tried = list(dict.fromkeys(step.partition(":")[0] for step in path or []))
    if tried:
        names = ", ".join(provider_label(slug, routes) for slug in tried)
        err.message = f"{err.message} (tried: {names}; path {' > '.join(path or [])})"
        err.headers["X-Switchboard-Fallback"] = " > ".join(path or [])
        err.headers["X-Switchboard-Provider"] = tried[-1]
    return err

def provider_label(slug: str, routes: list[router.Route]) -> str:
    name = next((r.provider.name for r in routes if r.provider.slug == slug), slug)
    return f"{name} ({slug})" if name != slug else slug

def upstream_error(failure: UpstreamFailure, routes: list[router.Route]) -> AppError:
    keys = [r.target.api_key for r in routes]
    upstream_msg = ""
    if failure.error_body:
        err = failure.error_body.get("error", failure.error_body)
        if isinstance(err, dict):
            upstream_msg = str(err.get("message", ""))
    detail = redact(upstream_msg or failure.message, *keys)[:500]  # redact first: a cut key would escape
    if failure.kind == "blocked_address":
        return AppError("The base URL points to a private or internal address, which is not allowed.",
                        code="base_url_not_allowed", status=400, field="X-BYOK-Base-URL")
    if failure.kind == "timeout":
        return UpstreamError(f"The provider did not answer in time: {detail}", code="upstream_timeout",
                             status=504)
    if failure.kind == "connect":
        return UpstreamError("The provider could not be reached.", code="upstream_unreachable", status=502)
    status = failure.status or 502
    if status == 429:
        return AppError(f"The provider is rate limiting: {detail}", code="upstream_rate_limited", status=429)
    if status in (401, 403):
        return AppError(f"The provider refused the API key: {detail}", code="upstream_auth_failed",
                        status=502 if routes[0].mode == "member" else 400)
    if 400 <= status < 500:
        return AppError(f"The provider rejected the request: {detail}", code="upstream_bad_request",
                        status=400 if status != 404 else 404)
    return UpstreamError(f"The provider failed: {detail}", code="upstream_error", status=502)


def team_refused(reason: str) -> Forbidden:
    if reason == "team_not_allowed":
        return Forbidden("This API key is bound to another team than X-Switchboard-Team names.",
                         code="team_not_allowed", field="X-Switchboard-Team")
    return Forbidden("You are not a member of the team this request would bill (X-Switchboard-Team, the API "
                     "key's team or your default team).", code="not_a_team_member")


def usage_field(upstream: Any, t_in: int, t_out: int, source: str) -> dict[str, Any]:
    """The `usage` a JSON answer carries: the numbers Switchboard charged, and `switchboard_estimated` (a field the
    official SDKs keep) saying whether they were counted here (estimated or corrected) rather than measured."""
    usage = dict(upstream) if isinstance(upstream, dict) else {}
    if source != "measured":
        usage.update(prompt_tokens=t_in, completion_tokens=t_out, total_tokens=t_in + t_out)
    usage["switchboard_estimated"] = source != "measured"
    return usage


def receipt_comment(receipt: Receipt) -> bytes:
    """`: switchboard {receipt json}` — the closing receipt of a stream as an SSE comment line."""
    return b": switchboard " + json.dumps(receipt.as_dict(), separators=(",", ":")).encode() + b"\n\n"


def delivered_text(body: dict[str, Any]) -> str:
    """Everything a chat.completion delivered as text: every choice's content and tool call arguments."""
    parts: list[str] = []
    for choice in body.get("choices") or []:
        message = (choice.get("message") or {}) if isinstance(choice, dict) else {}
        if not isinstance(message, dict):
            continue
        if message.get("content"):
            parts.append(str(message["content"]))
        for call in message.get("tool_calls") or []:
            if isinstance(call, dict) and isinstance(call.get("function"), dict):
                parts.append(str(call["function"].get("arguments") or ""))
    return "".join(parts)
