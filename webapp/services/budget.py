"""The member-mode budget of one request, by construction: what the prompt is counted at, the output limit each
route may have, what to reserve, and the upstream body that cannot make a provider produce more than the
reservation pays for. Pure rules: no Flask, no database.

Every number a client sends is hostile. The output limit Switchboard writes upstream is
    min(client's limit or the default, the model's max output, the context room, what the reservation pays for)
and it is written into every field the target provider honours, while every other field a server might read as an
output limit is removed. `n` multiplies the output; tools, response formats, images and the system prompt are in
the prompt count. What cannot be priced is refused with a 400."""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Any
from urllib.parse import urlsplit

from webapp.errors import AppError
from webapp.repos.providers import ModelRate
from webapp.services import tokens
from webapp.services.credits import cost

# Any other name a server reads as an output limit or a forced minimum (vLLM min_tokens, llama.cpp n_predict,
# Ollama num_predict, TGI max_new_tokens, best_of): removed from member-mode bodies.
_LIMIT_LIKE = re.compile(r"^(?:max|min)_\w*tokens$|^n_predict$|^num_predict$|^max_new_tokens$|^max_length$"
                         r"|^best_of$", re.IGNORECASE)
# Hosts that honour only max_completion_tokens (OpenAI rejects max_tokens for its reasoning models).
_COMPLETION_ONLY_HOSTS = ("api.openai.com",)
# The prompt is counted with tiktoken, not the provider's own tokenizer: reserve a margin over the count.
PROMPT_MARGIN = Fraction(11, 10)
PROMPT_MARGIN_TOKENS = 8
# The smallest answer worth serving when the balance or the cap cannot pay for the default limit.
MIN_ANSWER_TOKENS = 16

_UNPRICEABLE = {
    "audio": "audio output",
    "prediction": "predicted outputs",
    "web_search_options": "web search",
}


def refuse_unpriceable(body: dict[str, Any]) -> None:
    """Member mode: a request Switchboard cannot price is refused, never waved through."""
    for name, what in _UNPRICEABLE.items():
        if body.get(name) is not None:
            raise AppError(f"Member mode cannot price {what} (`{name}`); use your own key (BYOK) for it.",
                           code="unpriceable_request", status=400, field=name)
    modalities = body.get("modalities")
    if modalities is not None and modalities != ["text"]:
        raise AppError("Member mode can price text output only (`modalities: [\"text\"]`).",
                       code="unpriceable_request", status=400, field="modalities")
    tier = body.get("service_tier")
    if tier not in (None, "auto", "default"):
        raise AppError("Member mode is priced at the default service tier; leave `service_tier` out.",
                       code="unpriceable_request", status=400, field="service_tier")
    tools = body.get("tools")
    if isinstance(tools, list):
        for i, tool in enumerate(tools):
            if not isinstance(tool, dict) or tool.get("type") != "function":
                raise AppError("Member mode can price function tools only (built-in tools bill per call).",
                               code="unpriceable_request", status=400, field=f"tools[{i}].type")


def prompt_tokens(body: dict[str, Any], messages: list[dict[str, Any]], model: str) -> int:
    """The prompt as it will be billed: messages (system included, images at a per-image estimate) plus every
    field the provider turns into prompt text (tools, legacy functions, tool_choice, response_format schemas)."""
    tools = body.get("tools") if isinstance(body.get("tools"), list) else None
    total = tokens.count_messages(messages, model, tools)
    for name in ("functions", "function_call", "tool_choice", "response_format"):
        value = body.get(name)
        if isinstance(value, (dict, list)):
            total += tokens.count_text(tokens.compact_json(value), model)
    return total


def reserved_prompt(counted: int) -> int:
    return math.ceil(counted * PROMPT_MARGIN) + PROMPT_MARGIN_TOKENS


@dataclass(frozen=True)
class RouteLimit:
    """The output limit of one route before money: client's (or the default), model maximum, context room."""

    cap: int  # per choice
    prompt: int  # reserved prompt tokens on this route


def route_limit(client_limit: int | None, default_limit: int, rate: ModelRate, prompt: int) -> RouteLimit | None:
    """None when the prompt leaves no room in the model's context window."""
    room = rate.context_window - prompt
    if room < 1:
        return None
    wanted = client_limit if client_limit is not None else default_limit
    return RouteLimit(min(wanted, rate.max_output_tokens, room), prompt)


def route_cost(rate: ModelRate, multiplier: Decimal, prompt: int, per_choice: int, n: int) -> int:
    # The prompt at the dearest rate a prompt token can cost (a cache write may cost more than plain input).
    return cost(prompt, per_choice * n, _prompt_rate(rate), rate.output_rate, multiplier)


def _prompt_rate(rate: ModelRate) -> int:
    value = getattr(rate, "cache_write_rate", None)
    return max(rate.input_rate, value or 0)


@dataclass(frozen=True)
class Priced:
    """One route as money sees it."""

    rate: ModelRate
    multiplier: Decimal
    limit: RouteLimit


def reservation_bounds(routes: list[Priced], n: int, client_set_limit: bool, *,
                       dearest: bool = True) -> tuple[int, int]:
    """(least, most) to reserve: most pays for the full limit on the dearest route (with `dearest` off: on the
    first route, whose price then bounds every fallback); least pays for a short answer there, or equals most when
    the client set its own limit (that limit is then honoured or refused, not cut)."""
    routes = routes if dearest else routes[:1]
    most = max(route_cost(p.rate, p.multiplier, p.limit.prompt, p.limit.cap, n) for p in routes)
    if client_set_limit:
        return most, most
    least = max(route_cost(p.rate, p.multiplier, p.limit.prompt, min(p.limit.cap, MIN_ANSWER_TOKENS), n)
                for p in routes)
    return least, most


def output_limits(amount: int, routes: list[Priced], n: int) -> list[int]:
    """Each route's output limit (per choice): its cap, lowered to what `amount` pays for on that route."""
    return [max(min(p.limit.cap, affordable_output(amount, p.rate, p.multiplier, p.limit.prompt, n)), 1)
            for p in routes]


def largest_fit(available: int, routes: list[Priced], n: int) -> int:
    """The largest max_tokens that `available` would pay for on every route (-1: not even the prompt)."""
    return min(min(p.limit.cap, affordable_output(available, p.rate, p.multiplier, p.limit.prompt, n))
               for p in routes)


def affordable_output(amount: int, rate: ModelRate, multiplier: Decimal, prompt: int, n: int) -> int:
    """The largest per-choice output T with cost(prompt, n*T) <= amount (exact rational arithmetic); -1 when not
    even the prompt is paid for. Rates of 0 make output free: the answer is then unbounded by money."""
    mult = Fraction(multiplier)
    if mult == 0 or rate.output_rate == 0:
        return 10**12 if cost(prompt, 0, _prompt_rate(rate), rate.output_rate, multiplier) <= amount else -1
    # ceil(x) <= amount  <=>  x <= amount, for an integer amount.
    room = Fraction(amount * 1000) / mult - prompt * _prompt_rate(rate)
    if room < 0:
        return -1
    total = math.floor(room / rate.output_rate)
    per_choice = total // n
    assert cost(prompt, per_choice * n, _prompt_rate(rate), rate.output_rate, multiplier) <= amount
    return per_choice


def limit_fields(api_style: str, base_url: str) -> tuple[str, ...]:
    """The body fields the target provider reads as its output limit."""
    if api_style == "anthropic":
        return ("max_tokens",)  # the Anthropic adapter translates max_tokens to Messages' required max_tokens
    if _hostname(base_url) in _COMPLETION_ONLY_HOSTS:
        return ("max_completion_tokens",)
    return ("max_tokens", "max_completion_tokens")  # compatible servers read one or the other


@functools.lru_cache(maxsize=256)
def _hostname(base_url: str) -> str:
    """The lower-cased host of a base URL (parsed once per URL: every member request asks)."""
    return (urlsplit(base_url).hostname or "").lower()


def write_limit(body: dict[str, Any], limit: int, api_style: str, base_url: str) -> dict[str, Any]:
    """`body` with `limit` written into every field the provider honours and every other limit-like field removed
    (Ollama's options.num_predict included)."""
    out = {k: v for k, v in body.items() if not _LIMIT_LIKE.match(k)}
    options = out.get("options")
    if isinstance(options, dict):
        out["options"] = {k: v for k, v in options.items() if not _LIMIT_LIKE.match(k)}
    for name in limit_fields(api_style, base_url):
        out[name] = limit
    return out


def effective_limit(upstream_body: dict[str, Any]) -> int | None:
    """What a provider could read as the output limit of this body: the largest limit-like value present (a server
    reading any one of them stays within it), None when any is missing or not an integer."""
    values = [v for k, v in upstream_body.items() if _LIMIT_LIKE.match(k)]
    options = upstream_body.get("options")
    if isinstance(options, dict):
        values += [v for k, v in options.items() if _LIMIT_LIKE.match(k)]
    if not values or not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return None
    return max(values)



# An upstream's usage numbers are believed only within these bounds.
_ABSURD_TOKENS = 100_000_000


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= _ABSURD_TOKENS else None


def settle_usage(usage: Any, delivered: str, prompt_estimate: int, model: str, limit: int | None,
                 n: int) -> tuple[int, int, str]:
    """(prompt tokens, completion tokens, source) to settle on. "measured": the upstream's numbers; "estimated":
    it sent none, so tiktoken counts what was delivered; "corrected": it sent numbers that cannot be true (not a
    non-negative integer, absurdly large, more output than the limit allowed and than was delivered, or far less
    output than was visibly delivered), replaced by the estimate."""
    if not isinstance(usage, dict) or (usage.get("prompt_tokens") is None and usage.get("completion_tokens") is None):
        return prompt_estimate, tokens.count_text(delivered, model), "estimated"
    source = "measured"
    t_in = _count(usage.get("prompt_tokens"))
    if t_in is None or t_in > 10 * prompt_estimate + 10_000:
        t_in, source = prompt_estimate, "corrected"
    t_out = _count(usage.get("completion_tokens"))
    seen = tokens.count_text(delivered, model)
    # Hidden reasoning tokens are within the limit; visible output can only be what was delivered.
    ceiling = max(limit * n if limit is not None else _ABSURD_TOKENS, 2 * seen + 64)
    if t_out is None or t_out > ceiling or 2 * t_out < seen - 2:
        t_out, source = seen, "corrected"
    return t_in, t_out, source
