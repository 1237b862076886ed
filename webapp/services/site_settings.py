"""Site settings for credits: the sign-up grant, what one credit is worth for display, the low-balance threshold.

Admins read and change the whole row (as service_role, inside a transaction whose claims the database has confirmed
are an admin's); every change is audited with before and after in the same transaction. Users read the display
columns under RLS. The sign-up grant itself is applied by the database when auth.users gets a row
(migration 20261130300000_site_settings.sql), so it needs nothing from the app and holds for every backend."""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from webapp.db import Database
from webapp.errors import ValidationError
from webapp.repos import admin as admin_repo
from webapp.repos import site_settings as repo
from webapp.services.admin import admin_tx
from webapp.services.credits import MICRO, format_credits, parse_amount

FIELDS = ("signup_grant", "currency_code", "currency_symbol", "credit_value", "low_balance_threshold")
MAX_CREDITS = Decimal(10) ** 9
MAX_VALUE = Decimal(10) ** 6
CODE_RE = re.compile(r"[A-Za-z]{3}")
SYMBOL_RE = re.compile(r"[^\s\x00-\x1f\x7f]{0,4}")


def for_admin(db: Database, claims: Mapping[str, Any]) -> repo.SiteSettings:
    with admin_tx(db, claims) as conn, admin_repo.service_role(conn):
        return repo.get(conn)


def display(db: Database, claims: Mapping[str, Any]) -> repo.Display:
    with db.as_user(dict(claims)) as conn:
        return repo.display(conn)


def validate(payload: Any) -> dict[str, object]:
    """The stored values of the fields sent (any subset of FIELDS); unknown fields are refused."""
    if not isinstance(payload, Mapping) or not payload:
        raise ValidationError({"body": f"Send a JSON object with any of: {', '.join(FIELDS)}."})
    errors: dict[str, str] = {}
    values: dict[str, object] = {}
    for name in payload:
        if name not in FIELDS:
            errors[str(name)[:64]] = "Unknown setting."
    for name in ("signup_grant", "low_balance_threshold"):
        if name in payload:
            micro, error = parse_amount(payload[name], MAX_CREDITS)
            if error:
                errors[name] = error
            else:
                values[name] = micro
    if "credit_value" in payload:
        value, error = parse_amount(payload["credit_value"], MAX_VALUE, "currency units")
        if error:
            errors["credit_value"] = error
        else:
            values["credit_value"] = value
    if "currency_code" in payload:
        code = payload["currency_code"]
        if not isinstance(code, str) or not CODE_RE.fullmatch(code.strip()):
            errors["currency_code"] = "Three letters, such as USD or EUR."
        else:
            values["currency_code"] = code.strip().upper()
    if "currency_symbol" in payload:
        symbol = payload["currency_symbol"]
        if not isinstance(symbol, str) or not symbol.isprintable() or not SYMBOL_RE.fullmatch(symbol.strip()):
            errors["currency_symbol"] = "Up to 4 characters without spaces, such as $ or €; empty to show the code."
        else:
            values["currency_symbol"] = symbol.strip()
    if errors:
        raise ValidationError(errors)
    return values


def _readable(name: str, value: Any, s: repo.SiteSettings) -> str:
    """How the audit log shows a stored value."""
    if name in ("signup_grant", "low_balance_threshold"):
        return f"{format_credits(int(value))} credits"
    if name == "credit_value":
        return value_label(repo.Display(s.currency_code, s.currency_symbol, int(value), 0))
    return str(value)


def update(db: Database, claims: Mapping[str, Any], payload: Any) -> tuple[repo.SiteSettings, list[str]]:
    """Validate and store; audit `settings.credits` with the changed fields before and after. Returns the new row
    and the names of the fields that changed (none: nothing stored, nothing audited)."""
    values = validate(payload)
    actor = str(claims["sub"])
    with admin_tx(db, claims) as conn, admin_repo.service_role(conn):
        before = repo.get(conn)
        changed = [n for n in FIELDS if n in values and values[n] != getattr(before, n)]
        if not changed:
            return before, []
        repo.update(conn, {n: values[n] for n in changed}, actor)
        after = repo.get(conn)
        admin_repo.insert_audit(conn, actor, "settings.credits", "site settings",
                                {n: _readable(n, getattr(before, n), before) for n in changed},
                                {n: _readable(n, getattr(after, n), after) for n in changed})
        return after, changed


def _money(units: Decimal, d: repo.Display, places: int = 2) -> str:
    q = units.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
    text = f"{q:,.{places}f}"
    return f"{d.currency_symbol}{text}" if d.currency_symbol else f"{text} {d.currency_code}"


def money(micro_credits: int, d: repo.Display) -> str:
    """What `micro_credits` are worth, for display: "$19.99"; "< $0.01" for a positive amount that rounds to 0."""
    units = Decimal(micro_credits) * d.credit_value / (MICRO * MICRO)
    shown = _money(units, d)
    if micro_credits > 0 and d.credit_value > 0 and units < Decimal("0.005"):
        return "< " + _money(Decimal("0.01"), d)
    return shown


def value_label(d: repo.Display) -> str:
    """ "1 credit = $1.00" (more decimals only when the value needs them)."""
    units = Decimal(d.credit_value) / MICRO
    places = max(2, min(6, -units.normalize().as_tuple().exponent))  # type: ignore[operator]
    return f"1 credit = {_money(units, d, places)}"


def settings_dict(s: repo.SiteSettings) -> dict[str, Any]:
    return {"signup_grant": format_credits(s.signup_grant), "signup_grant_micro": s.signup_grant,
            "currency_code": s.currency_code, "currency_symbol": s.currency_symbol,
            "credit_value": f"{Decimal(s.credit_value) / MICRO:.6f}", "credit_value_label": value_label(s),
            "low_balance_threshold": format_credits(s.low_balance_threshold),
            "low_balance_threshold_micro": s.low_balance_threshold,
            "updated_at": s.updated_at.isoformat(), "updated_by": s.updated_by_email}
