"""The user's preferences: read and validated update. The same rules serve the settings page and the JSON API."""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

import psycopg

from webapp.config import Settings
from webapp.db import Database
from webapp.errors import ValidationError
from webapp.repos import preferences as prefs_repo
from webapp.repos.context import UserContext
from webapp.services import router
from webapp.services.catalog import Catalog
from webapp.services.chat_request import MODEL_NAME
from webapp.services.credits import MICRO, format_credits

USERNAME_RE = re.compile(r"^[A-Za-z0-9_.-]{3,32}$")
TASK_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
BOOLS = ("email_notifications", "marketing_emails", "fallbacks_enabled", "never_spend_credits",
         "allow_dearer_fallbacks")


def to_dict(p: prefs_repo.Preferences) -> dict[str, Any]:
    return {
        "username": p.username, "first_name": p.first_name, "last_name": p.last_name,
        "email_notifications": p.email_notifications, "marketing_emails": p.marketing_emails,
        "llm_mode": p.llm_mode, "default_provider": p.default_provider, "fallbacks_enabled": p.fallbacks_enabled,
        "never_spend_credits": p.never_spend_credits, "allow_dearer_fallbacks": p.allow_dearer_fallbacks,
        "provider_priorities": list(p.provider_priorities),
        "task_overrides": p.task_overrides,
        "monthly_credit_cap": format_credits(p.monthly_credit_cap) if p.monthly_credit_cap is not None else None,
    }


@dataclass(frozen=True)
class Offered:
    """What a user can route to in one mode: provider slug → the models offered there (None: any model, as with
    the user's own key, where the provider decides)."""

    mode: str
    providers: dict[str, tuple[str, ...] | None]

    def problem(self, provider: str, model: str | None = None) -> str | None:
        """Why `provider` (and `model`) is not offered in this mode, or None when it is."""
        where = "member mode" if self.mode == "member" else "BYOK mode"
        if provider not in self.providers:
            why = "with a stored key of yours that allows BYOK" if self.mode == "byok" else "ready for members"
            return f"{provider} is not offered to you in {where} (not a provider {why}). Offered: {self.summary()}."
        models = self.providers[provider]
        if model is not None and models is not None and model not in models:
            return (f"{provider} does not offer {model!r} in {where}. Offered there: {', '.join(models) or 'none'}."
                    f" Offered: {self.summary()}.")
        return None

    def summary(self) -> str:
        if not self.providers:
            return "nothing" + (" (add a key first)" if self.mode == "byok" else "")
        return "; ".join(f"{slug} ({', '.join(models) if models is not None else 'any model'})"
                         for slug, models in self.providers.items())

    def listing(self) -> list[dict[str, Any]]:
        return [{"provider": slug, "models": list(models) if models is not None else None}
                for slug, models in self.providers.items()]


def offered(mode: str, ctx: UserContext, catalog: Catalog, settings: Settings) -> Offered:
    """Member: enabled providers ready for members, with their enabled priced chat models. BYOK: enabled providers
    allowing BYOK that the user has a stored (enabled) key for; any model name."""
    if mode == "byok":
        key_slugs = {catalog.by_id[k.provider_id].slug for k in ctx.keys if k.provider_id in catalog.by_id}
        return Offered(mode, {slug: None for slug, p in catalog.providers.items()
                              if slug in key_slugs and p.byok_allowed and router.pin_usable(p)})
    providers: dict[str, tuple[str, ...] | None] = {}
    for slug, p in sorted(catalog.providers.items(), key=lambda item: (item[1].sort_order, item[0])):
        if not router.pin_usable(p) or not router.member_ready(p, catalog, settings):
            continue
        models = tuple(m for m in catalog.models_of(slug) if _chat_rate(catalog, slug, m))
        if models:
            providers[slug] = models
    return Offered("member", providers)


def _chat_rate(catalog: Catalog, slug: str, model: str) -> bool:
    """An enabled, priced chat model: overrides and the default route chat requests, never to an embedding model."""
    rate = router.offered_rate(catalog, slug, model)
    return rate is not None and rate.kind == "chat"


def warnings(prefs: prefs_repo.Preferences, ctx: UserContext, catalog: Catalog,
             settings: Settings) -> list[tuple[str, str]]:
    """(kind, text) per task override ("override"), default provider ("default") or priority ("priority") that no
    longer resolves in the user's mode (an admin disabled or retired it since it was saved), computed from the
    catalog as it is now."""
    offer = offered(prefs.llm_mode, ctx, catalog, settings)
    out = []
    for task, rule in sorted(prefs.task_overrides.items()):
        if isinstance(rule, dict):
            problem = offer.problem(str(rule.get("provider")), str(rule.get("model")))
            if problem:
                out.append(("override", f"Task override {task!r} ({rule.get('provider')}/{rule.get('model')}) no "
                                        f"longer resolves: {problem}"))
    if prefs.default_provider and offer.problem(prefs.default_provider):
        out.append(("default", f"Your default provider {prefs.default_provider!r} is no longer offered to you in "
                               "your mode."))
    for slug in prefs.provider_priorities:
        if slug not in catalog.providers or not router.pin_usable(catalog.providers[slug]):
            out.append(("priority", f"{slug!r} in your provider order is disabled or retired; requests skip it."))
    return out


def get(db: Database, claims: dict[str, Any]) -> prefs_repo.Preferences:
    with db.as_user(claims) as conn:
        return prefs_repo.get(conn, str(claims["sub"]))


def validate(payload: Any, catalog: Catalog, offer: Offered | None = None) -> dict[str, Any]:
    """Only the fields present are checked and returned; unknown fields are an error. With `offer`, the default
    provider and the task overrides must be offered to the user (a 422 then carries the offered list)."""
    if not isinstance(payload, dict):
        raise ValidationError({"body": "Send a JSON object."})
    errors: dict[str, str] = {}
    out: dict[str, Any] = {}
    known = set(prefs_repo.EDITABLE)
    for key in payload:
        if key not in known:
            errors[key] = "Unknown setting."
    enabled = {s for s, p in catalog.providers.items() if p.enabled}
    if "username" in payload:
        name = payload["username"]
        if name in (None, ""):
            out["username"] = None
        elif not isinstance(name, str) or not USERNAME_RE.fullmatch(name):
            errors["username"] = "3 to 32 letters, digits, dots, dashes or underscores."
        else:
            out["username"] = name
    for key in ("first_name", "last_name"):
        if key in payload:
            value = payload[key]
            if not isinstance(value, str) or len(value) > 80:  # the document's maxLength counts what was sent
                errors[key] = "At most 80 characters."
            elif "\x00" in value:  # Postgres text cannot hold NUL
                errors[key] = "No NUL characters."
            else:
                out[key] = value.strip()
    for key in BOOLS:
        if key in payload:
            if not isinstance(payload[key], bool):
                errors[key] = "Must be true or false."
            else:
                out[key] = payload[key]
    if "llm_mode" in payload:
        if payload["llm_mode"] not in ("member", "byok"):
            errors["llm_mode"] = "Choose member or byok."
        else:
            out["llm_mode"] = payload["llm_mode"]
    if "default_provider" in payload:
        value = payload["default_provider"]
        if value not in (None, "") and not (isinstance(value, str) and value in enabled):
            errors["default_provider"] = "Choose an enabled provider."
        elif value and offer is not None and (problem := offer.problem(value)):
            errors["default_provider"] = problem
        else:
            out["default_provider"] = value or None
    if "provider_priorities" in payload:
        value = payload["provider_priorities"]
        if (not isinstance(value, list) or not all(isinstance(v, str) and v in catalog.providers for v in value)
                or len(set(value)) != len(value)):
            errors["provider_priorities"] = "A list of distinct provider slugs."
        else:
            out["provider_priorities"] = value
    if "task_overrides" in payload:
        _task_overrides(payload["task_overrides"], catalog, enabled, errors, out, offer)
    if "monthly_credit_cap" in payload:
        _cap(payload["monthly_credit_cap"], errors, out)
    if errors:
        exc = ValidationError(errors)
        if offer is not None and {"default_provider", "task_overrides"} & set(errors):
            exc.details["offered"] = {"mode": offer.mode, "providers": offer.listing()}
        raise exc
    return out


def _task_overrides(value: Any, catalog: Catalog, enabled: set[str], errors: dict[str, str],
                    out: dict[str, Any], offer: Offered | None = None) -> None:
    if not isinstance(value, dict) or len(value) > 50:
        errors["task_overrides"] = "An object of task name to {provider, model} (at most 50)."
        return
    clean = {}
    for task, rule in value.items():
        if not TASK_RE.fullmatch(str(task)):
            errors["task_overrides"] = (f"Task {str(task)[:64]!r}: name it with 1 to 64 letters, digits, '.', '-'"
                                        " or '_'.")
            return
        if not isinstance(rule, dict):
            errors["task_overrides"] = f"Task {task!r}: send an object with provider and model."
            return
        provider, model = rule.get("provider"), rule.get("model")
        if not isinstance(provider, str) or provider not in enabled:
            errors["task_overrides"] = f"Task {task!r}: choose an enabled provider."
            return
        if not isinstance(model, str) or not MODEL_NAME.fullmatch(model.strip()):
            # The model reaches upstream bodies and the X-Switchboard-Model header: the chat path's own rule.
            errors["task_overrides"] = f"Task {task!r}: name a model (1 to 200 printable ASCII characters, no spaces)."
            return
        if offer is not None and (problem := offer.problem(provider, model.strip())):
            errors["task_overrides"] = f"Task {task!r}: {problem}"
            return
        clean[task] = {"provider": provider, "model": model.strip()}
    out["task_overrides"] = clean


def _cap(value: Any, errors: dict[str, str], out: dict[str, Any]) -> None:
    if value in (None, ""):
        out["monthly_credit_cap"] = None
        return
    try:
        credits = Decimal(str(value))
    except InvalidOperation:
        errors["monthly_credit_cap"] = "A number of credits, or empty for no cap."
        return
    if not credits.is_finite() or credits < 0 or credits > Decimal(10) ** 9:
        errors["monthly_credit_cap"] = "Between 0 and 1,000,000,000 credits."
        return
    out["monthly_credit_cap"] = int(credits * MICRO)


def update(db: Database, claims: dict[str, Any], payload: Any, catalog: Catalog,
           routing: tuple[UserContext, Settings] | None = None) -> prefs_repo.Preferences:
    """Validate and store. With `routing` (the user's context and the settings), a default provider or task
    override is checked against what is offered in the mode being saved (the payload's, else the current one)."""
    offer = None
    if routing is not None:
        ctx, settings = routing
        mode = payload.get("llm_mode") if isinstance(payload, dict) else None
        mode = mode if mode in ("member", "byok") else ctx.preferences.llm_mode
        offer = offered(mode, ctx, catalog, settings)
    values = validate(payload, catalog, offer)
    try:
        with db.as_user(claims) as conn:
            return prefs_repo.upsert(conn, str(claims["sub"]), values)
    except psycopg.errors.UniqueViolation:
        raise ValidationError({"username": "This username is taken."}) from None
