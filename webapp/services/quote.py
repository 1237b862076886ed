"""What a prompt would cost on each route open to the user, and whether it fits each model's context window.

Without a model: every route open to the caller (with a personal API key: only in the key's mode and on its
allow-list). With a model (and a task): the routes the gateway would plan for exactly that request, in order (the
same pins, overrides, allow-list, mode and dearer-fallback rule), and the amount it would reserve."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from webapp.errors import ValidationError
from webapp.repos.context import UserContext
from webapp.services import pricing, router, tokens
from webapp.services.catalog import Catalog
from webapp.services.chat_request import MODEL_NAME
from webapp.services.credits import cost, format_credits

MAX_PROMPT = 400_000

# (model, task, prompt, max_tokens) -> the gateway's plan for that request and what it would reserve (micro-credits;
# None: the prompt fits no route)
Planner = Callable[[str, "str | None", str, int], "tuple[router.Plan, int | None]"]


def _parse(payload: Any) -> tuple[str, int, str | None, str | None]:
    if not isinstance(payload, dict) or not isinstance(payload.get("prompt"), str) or not payload["prompt"].strip():
        raise ValidationError({"prompt": "Paste a prompt."})
    prompt = payload["prompt"]
    if len(prompt) > MAX_PROMPT:
        raise ValidationError({"prompt": f"At most {MAX_PROMPT:,} characters."})
    max_tokens = payload.get("max_tokens", 512)
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or not 1 <= max_tokens <= 1_000_000:
        raise ValidationError({"max_tokens": "An integer from 1 to 1,000,000."})
    model, task = payload.get("model"), payload.get("task")
    # Absent means "none"; a present field must be a string, as the document says (null is not a model or a task).
    if "model" in payload and (not isinstance(model, str) or not MODEL_NAME.fullmatch(model)):
        raise ValidationError({"model": "A model id: 1 to 200 printable ASCII characters, no spaces."})
    if "task" in payload and (not isinstance(task, str) or not task.strip() or len(task) > 64 or "\x00" in task):
        raise ValidationError({"task": "The task name must be 1 to 64 characters."})
    return prompt, max_tokens, model, task


def _entry(mode: str, slug: str, model: str, prompt_tokens: int, max_tokens: int, rate: Any,
           multiplier: Any) -> dict[str, Any]:
    fits = prompt_tokens + max_tokens <= rate.context_window
    if mode == "member":
        # The gateway never lets a model produce more than its maximum output, so neither is it quoted.
        # The worst case prices the prompt as the reservation does: at the dearest prompt rate (a cache write may
        # cost more than plain input).
        out = min(max_tokens, rate.max_output_tokens)
        micro = cost(prompt_tokens, out, pricing.prompt_rate_ceiling(rate), rate.output_rate, multiplier)
        return {"mode": "member", "provider": slug, "model": model, "prompt_tokens": prompt_tokens,
                "max_credits": format_credits(micro), "max_credits_micro": micro,
                "multiplier": format(multiplier.normalize(), "f"), "context_window": rate.context_window,
                "fits": fits, "rates": _rates(rate)}
    return {"mode": "byok", "provider": slug, "model": model, "prompt_tokens": prompt_tokens,
            "max_credits": format_credits(0), "max_credits_micro": 0, "multiplier": "0",
            "context_window": rate.context_window, "fits": fits}


def _rates(rate: Any) -> dict[str, str]:
    """Credits per 1,000 tokens of each kind, before the multiplier: how the charge splits once the provider reports
    cached, cache-write and reasoning tokens (reasoning is output)."""
    return {"input_per_1k": format_credits(rate.input_rate),
            "cached_input_per_1k": format_credits(pricing.cached_rate(rate)),
            "cache_write_per_1k": format_credits(pricing.cache_write_rate(rate)),
            "output_per_1k": format_credits(rate.output_rate)}


def quote(payload: Any, ctx: UserContext, catalog: Catalog, member_ready: Any,
          planner: Planner | None = None) -> dict[str, Any]:
    prompt, max_tokens, model, task = _parse(payload)
    if model is not None and planner is not None:
        return _planned(prompt, max_tokens, model, task, catalog, planner)
    scope = ctx.api_key
    modes = {scope.mode} if scope is not None and scope.mode in ("member", "byok") else {"member", "byok"}
    key_slugs = {catalog.by_id[k.provider_id].slug for k in ctx.keys if k.provider_id in catalog.by_id}
    routes = []
    for (slug, name), rate in sorted(catalog.rates.items()):
        provider = catalog.providers[slug]
        if not router.pin_usable(provider) or router.offered_rate(catalog, slug, name) is None:
            continue
        if scope is not None and not scope.allows(slug, name):
            continue
        prompt_tokens = tokens.count_messages([{"role": "user", "content": prompt}], name)
        if "member" in modes and member_ready(provider):
            routes.append(_entry("member", slug, name, prompt_tokens, max_tokens, rate, provider.credit_multiplier))
        if "byok" in modes and slug in key_slugs and provider.byok_allowed:
            routes.append(_entry("byok", slug, name, prompt_tokens, max_tokens, rate, provider.credit_multiplier))
    return {"max_tokens": max_tokens, "routes": routes}


def _planned(prompt: str, max_tokens: int, model: str, task: str | None, catalog: Catalog,
             planner: Planner) -> dict[str, Any]:
    """The gateway's own plan for this request, priced route by route, and what the gateway would reserve for it
    (the first fitting route's worst case, or the dearest's when the user allows dearer fallbacks; 0 in BYOK)."""
    plan, reserve = planner(model, task, prompt, max_tokens)
    routes = []
    for route in plan.routes:
        prompt_tokens = tokens.count_messages([{"role": "user", "content": prompt}], route.model)
        rate = route.rate or catalog.rates.get((route.provider.slug, route.model))
        if rate is None:  # BYOK to a model the catalog does not price: the provider decides, no credits
            routes.append({"mode": route.mode, "provider": route.provider.slug, "model": route.model,
                           "prompt_tokens": prompt_tokens, "max_credits": format_credits(0), "max_credits_micro": 0,
                           "multiplier": "0", "context_window": 0, "fits": True})
            continue
        routes.append(_entry(route.mode, route.provider.slug, route.model, prompt_tokens, max_tokens, rate,
                             route.provider.credit_multiplier))
    out: dict[str, Any] = {"max_tokens": max_tokens, "model": model, "routes": routes}
    if reserve is not None:
        out.update(reserve_credits=format_credits(reserve), reserve_credits_micro=reserve)
    return out
