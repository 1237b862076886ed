"""The user's own balance and ledger, read under RLS as the user."""

from __future__ import annotations

from typing import Any

from webapp.db import Database
from webapp.repos import credits as credits_repo
from webapp.services.credits import format_credits


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
