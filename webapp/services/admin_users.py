"""Admin work on members: find them by email, read their balance and ledger, grant or deduct credits.

auth.users and credits_adjust belong to service_role, so these step up inside a transaction opened as the admin,
once the database has confirmed the claims are an admin's. A balance only ever moves through credits_adjust,
which writes the ledger row; the audit row is written in the same transaction."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

import psycopg

from webapp.db import Database
from webapp.errors import NotFound, ValidationError
from webapp.repos import admin as admin_repo
from webapp.repos import credits as credits_repo
from webapp.services.admin import admin_tx
from webapp.services.credits import MICRO, format_credits

SEARCH_LIMIT = 50
LEDGER_LIMIT = 100
MAX_CREDITS = Decimal(10) ** 9


@dataclass(frozen=True)
class UserDetail:
    user: admin_repo.UserRow
    ledger: list[admin_repo.LedgerRow]


def search(db: Database, claims: Mapping[str, Any], query: Any) -> tuple[str, list[admin_repo.UserRow]]:
    """Users whose email contains the query (newest users when it is empty), with their balances."""
    text = query.strip()[:200] if isinstance(query, str) else ""
    if "\x00" in text:  # Postgres text cannot hold NUL; no email contains one
        raise ValidationError({"q": "No NUL characters."})
    with admin_tx(db, claims) as conn, admin_repo.service_role(conn):
        return text, admin_repo.search_users(conn, text, SEARCH_LIMIT)


def _detail(conn: psycopg.Connection, user_id: str) -> UserDetail:
    user = admin_repo.get_user(conn, user_id)
    if user is None:
        raise NotFound("No such user.", code="user_not_found")
    return UserDetail(user, admin_repo.ledger(conn, user_id, LEDGER_LIMIT))


def _uuid(value: str) -> str:
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        raise NotFound("No such user.", code="user_not_found") from None


def detail(db: Database, claims: Mapping[str, Any], user_id: str) -> UserDetail:
    with admin_tx(db, claims) as conn, admin_repo.service_role(conn):
        return _detail(conn, _uuid(user_id))


def validate_adjustment(payload: Any) -> tuple[int, str]:
    """(micro-credits, reason). `amount` is in credits, signed; from the form, `direction` grant or deduct gives
    the sign to a positive amount."""
    if not isinstance(payload, Mapping):
        raise ValidationError({"body": "Send a JSON object with amount and reason."})
    errors = {}
    raw = payload.get("amount")
    amount: Decimal | None = None
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        errors["amount"] = "Enter a number of credits."
    else:
        try:
            amount = Decimal(str(raw).strip())
        except InvalidOperation:
            errors["amount"] = "Enter a number of credits, for example 10 or 2.5."
    if amount is not None and (not amount.is_finite() or amount.adjusted() > 9):
        # NaN cannot be compared and a huge exponent overflows any arithmetic: refuse before either is tried
        errors["amount"] = "A non-zero amount of at most 1,000,000,000 credits."
        amount = None
    direction = payload.get("direction")
    if amount is not None:
        if direction not in (None, "", "grant", "deduct"):
            errors["direction"] = "Grant or deduct."
        elif direction and amount < 0:
            errors["amount"] = "Enter a positive amount; the button says grant or deduct."
        elif direction == "deduct":
            amount = -amount
        if "amount" not in errors and (not amount.is_finite() or amount == 0 or abs(amount) > MAX_CREDITS):
            errors["amount"] = "A non-zero amount of at most 1,000,000,000 credits."
        elif "amount" not in errors and amount != amount.quantize(Decimal(1) / MICRO):  # exact, even for 1E-999
            errors["amount"] = "At most 6 decimal places (1 micro-credit)."
    reason = payload.get("reason")
    if not isinstance(reason, str) or not reason.strip() or len(reason) > 500 or "\x00" in reason:  # as sent
        errors["reason"] = "Say why (1 to 500 characters); it is kept in the ledger."
    if errors:
        raise ValidationError(errors)
    assert amount is not None and isinstance(reason, str)
    return int(amount * MICRO), reason.strip()


def adjust(db: Database, claims: Mapping[str, Any], user_id: str, payload: Any) -> UserDetail:
    """Grant (positive) or deduct (negative) credits through credits_adjust, which writes the ledger row."""
    micro, reason = validate_adjustment(payload)
    user_id = _uuid(user_id)
    actor = str(claims["sub"])
    with admin_tx(db, claims) as conn, admin_repo.service_role(conn):
        before = _detail(conn, user_id).user
        try:
            with conn.transaction():  # a savepoint: a refused deduct must leave the transaction usable
                after = credits_repo.adjust(conn, user_id, micro, reason, actor)
        except psycopg.Error as exc:
            if getattr(exc, "sqlstate", None) != credits_repo.INSUFFICIENT:
                raise
            raise ValidationError({"amount": f"The balance is {format_credits(before.balance)} credits; "
                                             "a deduction cannot take it below zero."}) from None
        admin_repo.insert_audit(conn, actor, "credits.grant" if micro > 0 else "credits.deduct",
                                f"user:{before.email}", {"balance": format_credits(before.balance)},
                                {"balance": format_credits(after), "delta": format_credits(micro), "reason": reason})
        return _detail(conn, user_id)


def user_dict(u: admin_repo.UserRow) -> dict[str, Any]:
    return {"id": u.id, "email": u.email, "is_admin": u.is_admin, "balance": format_credits(u.balance),
            "balance_micro": u.balance, "created_at": u.created_at.isoformat() if u.created_at else None,
            "last_sign_in_at": u.last_sign_in_at.isoformat() if u.last_sign_in_at else None}


def detail_dict(d: UserDetail) -> dict[str, Any]:
    return {"user": user_dict(d.user),
            "ledger": [{"id": e.id, "kind": e.kind, "delta": format_credits(e.delta), "delta_micro": e.delta,
                        "balance_after": format_credits(e.balance_after), "request_id": e.request_id,
                        "reason": e.reason, "actor": e.actor_email, "created_at": e.created_at.isoformat()}
                       for e in d.ledger]}
