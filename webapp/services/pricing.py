"""Public rates and multipliers of enabled providers (read as `anon`: RLS shows enabled rows only), and how measured
usage is priced: the token split (cached, cache-write, reasoning) and the charge, each token exactly once."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal
from typing import Any

from webapp.db import Database
from webapp.repos import providers as providers_repo
from webapp.repos.providers import ModelRate
from webapp.services.credits import format_credits


def public_providers(db: Database) -> list[dict[str, Any]]:
    with db.as_anon() as conn:
        providers = providers_repo.list_public_providers(conn)
        rates = providers_repo.list_rates(conn)
    out = []
    for p in providers:
        models = [{"model": r.model, "input_per_1k": format_credits(r.input_rate),
                   "output_per_1k": format_credits(r.output_rate), "context_window": r.context_window}
                  for r in rates if r.provider_id == p.id]
        out.append({"slug": p.slug, "name": p.name, "api_style": p.api_style,
                    "multiplier": format(p.credit_multiplier.normalize(), "f"), "byok_allowed": p.byok_allowed,
                    "default_model": p.default_model, "models": models})
    return out


# -- tokens priced right -----------------------------------------------------------------------------------------
# An upstream's usage numbers are believed only within these bounds (as budget.settle_usage does).
_ABSURD_TOKENS = 100_000_000


@dataclass(frozen=True)
class TokenSplit:
    """How a request's tokens split beyond prompt/completion. `cached` and `cache_write` are parts of the prompt
    (cached + cache_write <= prompt), `reasoning` a part of the completion (already inside it: shown, never added)."""

    cached: int = 0  # read from the provider's prompt cache: the cached-input rate
    cache_write: int = 0  # written to the provider's prompt cache: the cache-write rate
    reasoning: int = 0  # hidden reasoning output: the output rate, as part of the completion

    def as_dict(self) -> dict[str, int]:
        return {"cached_tokens": self.cached, "cache_write_tokens": self.cache_write,
                "reasoning_tokens": self.reasoning}


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= _ABSURD_TOKENS else None


def _detail(usage: dict[str, Any], group: str, name: str) -> int | None:
    details = usage.get(group)
    return _count(details.get(name)) if isinstance(details, dict) else None


def _first(*values: int | None) -> int:
    return next((v for v in values if v is not None), 0)


def token_split(usage: Any, prompt: int, completion: int) -> TokenSplit:
    """The split of measured usage, in any of the wire formats Switchboard reads:
    chat completions (`prompt_tokens_details.cached_tokens`, `completion_tokens_details.reasoning_tokens`),
    Anthropic (`cache_read_input_tokens`, `cache_creation_input_tokens`; its `input_tokens` excludes both, the
    adapters add them into the prompt count) and the Responses API (`input_tokens_details.cached_tokens`,
    `output_tokens_details.reasoning_tokens`). `prompt` and `completion` are the counts the settle uses: the split
    is believed only when they are the upstream's own numbers (else every token is charged at the plain rate), and
    each part is clamped so no token is counted twice (cached + cache_write <= prompt, reasoning <= completion)."""
    if not isinstance(usage, dict):
        return TokenSplit()
    upstream_prompt = _first(_count(usage.get("prompt_tokens")), _responses_prompt(usage))
    upstream_completion = _first(_count(usage.get("completion_tokens")), _count(usage.get("output_tokens")))
    cached = cache_write = 0
    if upstream_prompt == prompt:
        cached = _first(_detail(usage, "prompt_tokens_details", "cached_tokens"),
                        _detail(usage, "input_tokens_details", "cached_tokens"),
                        _count(usage.get("cache_read_input_tokens")))
        cache_write = _first(_detail(usage, "prompt_tokens_details", "cache_write_tokens"),
                             _detail(usage, "prompt_tokens_details", "cache_creation_tokens"),
                             _count(usage.get("cache_creation_input_tokens")))
    cached = min(cached, prompt)
    cache_write = min(cache_write, prompt - cached)
    reasoning = 0
    if upstream_completion == completion:
        reasoning = min(_first(_detail(usage, "completion_tokens_details", "reasoning_tokens"),
                               _detail(usage, "output_tokens_details", "reasoning_tokens")), completion)
    return TokenSplit(cached, cache_write, reasoning)


def _responses_prompt(usage: dict[str, Any]) -> int | None:
    """A Responses-API (or raw Anthropic) usage's prompt: `input_tokens`, plus Anthropic's cache reads and writes
    when it carries them (Anthropic's input_tokens excludes them)."""
    given = _count(usage.get("input_tokens"))
    if given is None:
        return None
    return given + _first(_count(usage.get("cache_read_input_tokens"))) + _first(
        _count(usage.get("cache_creation_input_tokens")))


def cached_rate(rate: ModelRate) -> int:
    """Cached prompt tokens: the cached-input rate when set, never above the input rate (nor below 0)."""
    value = rate.cached_input_rate
    return rate.input_rate if value is None else max(0, min(value, rate.input_rate))


def cache_write_rate(rate: ModelRate) -> int:
    """Prompt-cache writes: the cache-write rate when set (it may exceed the input rate, as Anthropic's does), else
    the input rate."""
    value = getattr(rate, "cache_write_rate", None)
    return rate.input_rate if value is None else max(0, value)


def prompt_rate_ceiling(rate: ModelRate) -> int:
    """The dearest rate any prompt token can cost: what a reservation prices the prompt at."""
    return max(rate.input_rate, cache_write_rate(rate))


def charge(prompt: int, completion: int, split: TokenSplit, rate: ModelRate, multiplier: Decimal) -> int:
    """Micro-credits for measured usage, each token exactly once: the cached part of the prompt at the cached-input
    rate, the cache-write part at the cache-write rate, the rest of the prompt at the input rate, the completion
    (reasoning included, it is part of it) at the output rate; times the multiplier, exact decimal, rounded up."""
    cached = max(0, min(split.cached, prompt))
    written = max(0, min(split.cache_write, prompt - cached))
    plain = prompt - cached - written
    raw = (Decimal(plain) * rate.input_rate + Decimal(cached) * cached_rate(rate)
           + Decimal(written) * cache_write_rate(rate) + Decimal(completion) * rate.output_rate)
    return int((raw * Decimal(multiplier) / 1000).to_integral_value(rounding=ROUND_CEILING))
