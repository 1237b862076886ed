"""The user's preferences: read and validated update. The same rules serve the settings page and the JSON API."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any

import psycopg

from webapp.db import Database
from webapp.errors import ValidationError
from webapp.repos import preferences as prefs_repo
from webapp.services.catalog import Catalog
from webapp.services.chat_request import MODEL_NAME
from webapp.services.credits import MICRO, format_credits

USERNAME_RE = re.compile(r"^[A-Za-z0-9_.-]{3,32}$")
TASK_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
BOOLS = ("email_notifications", "marketing_emails", "fallbacks_enabled", "never_spend_credits")


def to_dict(p: prefs_repo.Preferences) -> dict[str, Any]:
    return {
        "username": p.username, "first_name": p.first_name, "last_name": p.last_name,
        "email_notifications": p.email_notifications, "marketing_emails": p.marketing_emails,
        "llm_mode": p.llm_mode, "default_provider": p.default_provider, "fallbacks_enabled": p.fallbacks_enabled,
        "never_spend_credits": p.never_spend_credits, "provider_priorities": list(p.provider_priorities),
        "task_overrides": p.task_overrides,
        "monthly_credit_cap": format_credits(p.monthly_credit_cap) if p.monthly_credit_cap is not None else None,
    }


def get(db: Database, claims: dict[str, Any]) -> prefs_repo.Preferences:
    with db.as_user(claims) as conn:
        return prefs_repo.get(conn, str(claims["sub"]))


def validate(payload: Any, catalog: Catalog) -> dict[str, Any]:
    """Only the fields present are checked and returned; unknown fields are an error."""
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
            if not isinstance(value, str) or len(value.strip()) > 80:
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
        _task_overrides(payload["task_overrides"], catalog, enabled, errors, out)
    if "monthly_credit_cap" in payload:
        _cap(payload["monthly_credit_cap"], errors, out)
    if errors:
        raise ValidationError(errors)
    return out


def _task_overrides(value: Any, catalog: Catalog, enabled: set[str], errors: dict[str, str],
                    out: dict[str, Any]) -> None:
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


def update(db: Database, claims: dict[str, Any], payload: Any, catalog: Catalog) -> prefs_repo.Preferences:
    values = validate(payload, catalog)
    try:
        with db.as_user(claims) as conn:
            return prefs_repo.upsert(conn, str(claims["sub"]), values)
    except psycopg.errors.UniqueViolation:
        raise ValidationError({"username": "This username is taken."}) from None
