"""Public rates and multipliers of enabled providers (read as `anon`: RLS shows enabled rows only)."""

from __future__ import annotations

from typing import Any

from webapp.db import Database
from webapp.repos import providers as providers_repo
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
