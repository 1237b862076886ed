"""Usage read as the user under RLS: totals from the daily rollups (repos/rollups.py) and recent requests."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

from webapp.db import Database
from webapp.errors import ValidationError
from webapp.repos import api_keys as api_keys_repo
from webapp.repos import request_logs, rollups
from webapp.services.credits import format_credits

GROUPS = rollups.USER_GROUPS  # day, provider, model, mode, api_key, team


def parse_range(start: str | None, end: str | None) -> tuple[date, date]:
    try:
        end_d = date.fromisoformat(end) if end else datetime.now(UTC).date()
        start_d = date.fromisoformat(start) if start else end_d - timedelta(days=29)
        end_d + timedelta(days=1)  # the exclusive end summary() queries with
    except (ValueError, OverflowError):  # OverflowError: a date at the very ends of the calendar
        raise ValidationError({"from": "Dates look like 2026-11-23."}) from None
    if start_d > end_d:
        raise ValidationError({"from": "The start must not be after the end."})
    if (end_d - start_d).days > 366:
        raise ValidationError({"from": "At most 366 days at a time."})
    return start_d, end_d


def parse_api_key(value: str | None) -> str | None:
    """The `api_key` filter: one of the user's personal API key ids (an id of no key of theirs matches nothing)."""
    if not value:
        return None
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise ValidationError({"api_key": "An API key id."}) from None


TOTALS = ("requests", "tokens_in", "tokens_out", "credits_micro", "errors", "cached_tokens", "cache_write_tokens",
          "reasoning_tokens")


def totals(buckets: list[dict[str, Any]]) -> dict[str, Any]:
    """The buckets added up: of the tokens in, cached_tokens were read from and cache_write_tokens written to the
    provider's prompt cache; of the tokens out, reasoning_tokens were the model's hidden reasoning."""
    out = {k: sum(int(b[k]) for b in buckets) for k in TOTALS}
    return {**out, "credits": format_credits(out["credits_micro"])}


def summary(db: Database, claims: dict[str, Any], start: date, end: date, group_by: list[str],
            api_key: str | None = None) -> dict[str, Any]:
    """Totals grouped by day, provider, model, mode or api_key (each key bucket names its key), optionally of
    one personal API key only."""
    for g in group_by:
        if g not in GROUPS:
            raise ValidationError({"group_by": f"Group by any of: {', '.join(GROUPS)}."})
    groups = list(dict.fromkeys(group_by)) or ["day", "provider"]
    with db.as_user(claims) as conn:
        user_id = str(claims["sub"])  # filled by as_user for a personal API key
        rows = rollups.user_buckets(conn, user_id, start, end + timedelta(days=1), groups, api_key)
        recent = request_logs.recent(conn, user_id, 50, api_key)
        names = api_keys_repo.names(conn, user_id)
    buckets = []
    for row in rows:
        item: dict[str, Any] = {}
        for i, g in enumerate(groups):
            item[g] = row[i].isoformat() if g == "day" and row[i] else row[i]
            if g == "api_key":
                item["api_key_name"] = names.get(row[i]) if row[i] else None
        n = len(groups)
        item.update(requests=int(row[n]), tokens_in=int(row[n + 1]), tokens_out=int(row[n + 2]),
                    credits=format_credits(int(row[n + 3])), credits_micro=int(row[n + 3]), errors=int(row[n + 4]),
                    cached_tokens=int(row[n + 5]), cache_write_tokens=int(row[n + 6]),
                    reasoning_tokens=int(row[n + 7]))
        buckets.append(item)
    return {"from": start.isoformat(), "to": end.isoformat(), "group_by": groups, "totals": totals(buckets),
            "buckets": buckets,
            "recent": [{"request_id": r.request_id, "mode": r.mode, "provider": r.provider, "model": r.model,
                        "tokens_in": r.tokens_in, "tokens_out": r.tokens_out, "usage": r.usage_source,
                        "credits": format_credits(r.credits), "status": r.status, "error_code": r.error_code,
                        "created_at": r.created_at.isoformat(), "api_key_id": r.api_key_id,
                        "api_key_name": names.get(r.api_key_id) if r.api_key_id else None} for r in recent]}
