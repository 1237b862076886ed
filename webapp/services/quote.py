"""What a prompt would cost on each route open to the user, and whether it fits each model's context window."""

from __future__ import annotations

from typing import Any

from webapp.errors import ValidationError
from webapp.repos.context import UserContext
from webapp.services import tokens
from webapp.services.catalog import Catalog
from webapp.services.credits import cost, format_credits

MAX_PROMPT = 400_000


def quote(payload: Any, ctx: UserContext, catalog: Catalog, member_ready: Any) -> dict[str, Any]:
    if not isinstance(payload, dict) or not isinstance(payload.get("prompt"), str) or not payload["prompt"].strip():
        raise ValidationError({"prompt": "Paste a prompt."})
    prompt = payload["prompt"]
    if len(prompt) > MAX_PROMPT:
        raise ValidationError({"prompt": f"At most {MAX_PROMPT:,} characters."})
    max_tokens = payload.get("max_tokens", 512)
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or not 1 <= max_tokens <= 1_000_000:
        raise ValidationError({"max_tokens": "An integer from 1 to 1,000,000."})
    key_slugs = {catalog.by_id[k.provider_id].slug for k in ctx.keys if k.provider_id in catalog.by_id}
    routes = []
    for (slug, model), rate in sorted(catalog.rates.items()):
        provider = catalog.providers[slug]
        if not provider.enabled:
            continue
        prompt_tokens = tokens.count_messages([{"role": "user", "content": prompt}], model)
        fits = prompt_tokens + max_tokens <= rate.context_window
        if member_ready(provider):
            # The gateway never lets a model produce more than its maximum output, so neither is it quoted.
            out = min(max_tokens, rate.max_output_tokens)
            micro = cost(prompt_tokens, out, rate.input_rate, rate.output_rate, provider.credit_multiplier)
            routes.append({"mode": "member", "provider": slug, "model": model, "prompt_tokens": prompt_tokens,
                           "max_credits": format_credits(micro), "max_credits_micro": micro,
                           "multiplier": format(provider.credit_multiplier.normalize(), "f"),
                           "context_window": rate.context_window, "fits": fits})
        if slug in key_slugs and provider.byok_allowed:
            routes.append({"mode": "byok", "provider": slug, "model": model, "prompt_tokens": prompt_tokens,
                           "max_credits": format_credits(0), "max_credits_micro": 0, "multiplier": "0",
                           "context_window": rate.context_window, "fits": fits})
    return {"max_tokens": max_tokens, "routes": routes}
