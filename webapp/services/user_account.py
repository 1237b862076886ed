"""The user's own credits, read under RLS as the user: balance, ledger (keyset-paged), requests in flight, this
month's spending against the cap, and receipts."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from webapp.db import Database
from webapp.errors import NotFound, ValidationError
from webapp.repos import credits as credits_repo
from webapp.repos import preferences as prefs_repo
from webapp.repos import site_settings as site_repo
from webapp.services import site_settings
from webapp.services.credits import format_credits

PAGE, MAX_PAGE = 25, 100
MAX_ID = 2**63 - 1
DIGITS = re.compile(r"[0-9]{1,19}")  # ASCII only: str.isdigit() also accepts '²'


def credits_summary(db: Database, claims: dict[str, Any], limit: int = 50) -> dict[str, Any]:
    user_id = str(claims["sub"])
    with db.as_user(claims) as conn:
        balance = credits_repo.balance(conn, user_id)
        entries = credits_repo.ledger(conn, user_id, limit)
    return {
        "balance": format_credits(balance),
        "balance_micro": balance,
        "ledger": [{"id": e.id, "kind": e.kind, "delta": format_credits(e.delta), "delta_micro": e.delta,
                    "balance_after": format_credits(e.balance_after), "request_id": e.request_id,
                    "reason": e.reason, "created_at": e.created_at.isoformat()} for e in entries],
    }


def parse_page(limit: Any, before: Any) -> tuple[int, int | None]:
    """`limit` 1..100 (default 25) and `before` a ledger id (default: the newest). Anything else is a 422."""
    errors: dict[str, str] = {}
    size, cursor = PAGE, None
    if limit not in (None, ""):
        if not isinstance(limit, str) or not DIGITS.fullmatch(limit) or not 1 <= int(limit) <= MAX_PAGE:
            errors["limit"] = f"A whole number from 1 to {MAX_PAGE}."
        else:
            size = int(limit)
    if before not in (None, ""):
        if not isinstance(before, str) or not DIGITS.fullmatch(before) or not 1 <= int(before) <= MAX_ID:
            errors["before"] = "A ledger entry id (the next_before of the previous page)."
        else:
            cursor = int(before)
    if errors:
        raise ValidationError(errors)
    return size, cursor


@dataclass(frozen=True)
class LedgerPage:
    entries: list[credits_repo.UserLedgerEntry]
    next_before: int | None  # the cursor of the next (older) page; None on the last page


def ledger_page(db: Database, claims: dict[str, Any], limit: int, before: int | None) -> LedgerPage:
    user_id = str(claims["sub"])
    with db.as_user(claims) as conn:
        rows = credits_repo.ledger_page(conn, user_id, limit + 1, before)
    more = len(rows) > limit
    rows = rows[:limit]
    return LedgerPage(rows, rows[-1].id if more and rows else None)


def entry_dict(e: credits_repo.UserLedgerEntry) -> dict[str, Any]:
    return {"id": e.id, "kind": e.kind, "delta": format_credits(e.delta), "delta_micro": e.delta,
            "balance_after": format_credits(e.balance_after), "balance_after_micro": e.balance_after,
            "request_id": e.request_id, "reason": e.reason,
            "uncollected": format_credits(e.uncollected) if e.uncollected else None,
            "created_at": e.created_at.isoformat()}


def ledger_dict(p: LedgerPage) -> dict[str, Any]:
    return {"entries": [entry_dict(e) for e in p.entries], "next_before": p.next_before}


@dataclass(frozen=True)
class CreditsView:
    """The credits area of the user's page."""

    balance: int
    display: site_repo.Display
    month_spent: int
    monthly_cap: int | None
    reservations: list[credits_repo.OpenReservation]
    page: LedgerPage
    llm_mode: str

    @property
    def low(self) -> bool:
        return 0 < self.balance < self.display.low_balance_threshold

    @property
    def empty(self) -> bool:
        return self.balance == 0

    @property
    def money(self) -> str:
        return site_settings.money(self.balance, self.display)

    @property
    def value_label(self) -> str:
        return site_settings.value_label(self.display)

    @property
    def cap_left(self) -> int | None:
        return None if self.monthly_cap is None else max(self.monthly_cap - self.month_spent, 0)


def credits_view(db: Database, claims: dict[str, Any]) -> CreditsView:
    user_id = str(claims["sub"])
    with db.as_user(claims) as conn:
        prefs = prefs_repo.get(conn, user_id)
        rows = credits_repo.ledger_page(conn, user_id, PAGE + 1, None)
        return CreditsView(
            balance=credits_repo.balance(conn, user_id), display=site_repo.display(conn),
            month_spent=credits_repo.month_spent(conn, user_id), monthly_cap=prefs.monthly_credit_cap,
            reservations=credits_repo.open_reservations(conn, user_id),
            page=LedgerPage(rows[:PAGE], rows[PAGE - 1].id if len(rows) > PAGE else None),
            llm_mode=prefs.llm_mode)


def _request_id(value: Any) -> str:
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        raise NotFound("No request with that id.", code="request_not_found") from None


def receipt(db: Database, claims: dict[str, Any], request_id: Any) -> credits_repo.Receipt:
    """The user's own receipt; another user's request id is a 404 like an unknown one (never a 403)."""
    rid = _request_id(request_id)
    with db.as_user(claims) as conn:
        found = credits_repo.receipt(conn, str(claims["sub"]), rid)
    if found is None:
        raise NotFound("No request with that id.", code="request_not_found")
    return found


def _opt_credits(micro: int | None) -> str | None:
    return None if micro is None else format_credits(micro)


def receipt_dict(r: credits_repo.Receipt) -> dict[str, Any]:
    """`state`: settled, refunded or reserved (in flight) for a member request, logged for one that reserved
    nothing (BYOK, or refused before reserving)."""
    multiplier = format(Decimal(r.multiplier).normalize(), "f") if r.multiplier is not None else None
    return {"request_id": r.request_id, "state": r.reservation_status or "logged",
            "created_at": r.created_at.isoformat() if r.created_at else None, "mode": r.mode, "status": r.status,
            "provider": r.provider, "model": r.model, "task": r.task, "key_source": r.key_source,
            "tokens_in": r.tokens_in, "tokens_out": r.tokens_out, "usage": r.usage_source,
            "credits": _opt_credits(r.credits), "credits_micro": r.credits, "multiplier": multiplier,
            "reserved": _opt_credits(r.reserved), "reserved_micro": r.reserved,
            "shortfall": _opt_credits(r.shortfall), "fallback_path": list(r.fallback_path or []),
            "stream": r.stream, "error_code": r.error_code, "latency_ms": r.latency_ms,
            "output_limit": r.output_limit,
            "api_key": ({"id": r.api_key_id, "name": r.api_key_name, "prefix": r.api_key_prefix}
                        if r.api_key_id and r.api_key_name is not None else None),
            "team_id": r.team_id, "cached_tokens": r.cached_tokens, "cache_write_tokens": r.cache_write_tokens,
            "reasoning_tokens": r.reasoning_tokens}
