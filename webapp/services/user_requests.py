"""Every one of the user's requests over a date range: keyset pages (newer/older, stable while new requests
arrive) for the JSON API and the Requests page, and the same rows as a streamed CSV export. Read as the user
under RLS, and only the user's own rows (a team admin's view of the team is the team's page)."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from webapp.db import Database
from webapp.errors import ValidationError
from webapp.repos import api_keys as api_keys_repo
from webapp.repos import request_pages
from webapp.services.credits import format_credits
from webapp.services.date_ranges import DateRange

PAGE, MAX_LIMIT = 50, 200
LIMIT_RE = re.compile(r"[0-9]{1,4}")
UUID_RE = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
CURSOR_RE = re.compile(r"[A-Za-z0-9_-]{1,160}")
COLUMNS = ("request_id", "created_at", "mode", "provider", "model", "task", "tokens_in", "tokens_out",
           "cached_tokens", "cache_write_tokens", "reasoning_tokens", "usage", "credits", "credits_micro", "status",
           "error_code", "latency_ms", "api_key_id", "api_key_name", "team_id")


@dataclass(frozen=True)
class Page:
    range: DateRange
    rows: list[dict[str, Any]]
    limit: int
    newer: str | None  # the cursor of the page before (newer rows), if there are any
    older: str | None  # the cursor of the page after (older rows), if there are any
    api_key: str | None


def encode_cursor(row: request_pages.UserRequest) -> str:
    raw = f"{row.created_at.isoformat()}|{row.id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(value: str, name: str) -> tuple[datetime, str]:
    """A cursor from a previous page: (created_at, id). Anything else is a 422 on `name`."""
    try:
        if not CURSOR_RE.fullmatch(value):
            raise ValueError(value)
        text = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode()
        when, _, row_id = text.partition("|")
        parsed = datetime.fromisoformat(when)
        if parsed.tzinfo is None or not UUID_RE.fullmatch(row_id):
            raise ValueError(value)
        return parsed, row_id.lower()
    except (ValueError, binascii.Error, UnicodeDecodeError, OverflowError):
        raise ValidationError({name: "A cursor from a previous page's `newer` or `older`."}) from None


def parse_limit(raw: Any) -> int:
    text = raw if isinstance(raw, str) else ""
    if not text:
        return PAGE
    if not LIMIT_RE.fullmatch(text) or not 1 <= int(text) <= MAX_LIMIT:
        raise ValidationError({"limit": f"From 1 to {MAX_LIMIT} rows."})
    return int(text)


def parse_api_key(raw: Any) -> str | None:
    text = raw if isinstance(raw, str) else ""
    if not text:
        return None
    if not UUID_RE.fullmatch(text):
        raise ValidationError({"api_key": "An API key id."})
    return text.lower()


def request_dict(r: request_pages.UserRequest, names: Mapping[str, str]) -> dict[str, Any]:
    return {"request_id": r.request_id, "created_at": r.created_at.isoformat(), "mode": r.mode,
            "provider": r.provider, "model": r.model, "task": r.task, "tokens_in": r.tokens_in,
            "tokens_out": r.tokens_out, "cached_tokens": r.cached_tokens, "cache_write_tokens": r.cache_write_tokens,
            "reasoning_tokens": r.reasoning_tokens, "usage": r.usage_source, "credits": format_credits(r.credits),
            "credits_micro": r.credits, "status": r.status, "error_code": r.error_code, "latency_ms": r.latency_ms,
            "api_key_id": r.api_key_id, "api_key_name": names.get(r.api_key_id) if r.api_key_id else None,
            "team_id": r.team_id}


def parse_paging(args: Mapping[str, Any]) -> tuple[int, tuple[datetime, str] | None, bool, str | None]:
    """(limit, cursor, newer, api_key) from the query; anything malformed is a 422 on its field (an export,
    which ignores the paging, checks it too)."""
    limit = parse_limit(args.get("limit"))
    api_key = parse_api_key(args.get("api_key"))
    before, after = (str(args.get(k) or "") for k in ("before", "after"))
    if before and after:
        raise ValidationError({"after": "Either before or after, not both."})
    cursor = decode_cursor(before, "before") if before else decode_cursor(after, "after") if after else None
    return limit, cursor, bool(after), api_key


def page(db: Database, claims: Mapping[str, Any], r: DateRange, args: Mapping[str, Any]) -> Page:
    """One page of the user's requests in the range: `before` (older than that cursor) or `after` (newer than
    it), `limit` rows (50; 1 to 200), optionally of one personal API key (`api_key`)."""
    limit, cursor, after, api_key = parse_paging(args)
    with db.as_user(claims) as conn:
        user_id = str(claims["sub"])
        rows = request_pages.user_page(conn, user_id, r.since, r.until, limit + 1, cursor, bool(after), api_key)
        more = len(rows) > limit
        rows = rows[1:] if after and more else rows[:limit]
        if after:  # came from older rows: there are some, and newer ones when more than a page was found
            has_newer, has_older = more, bool(rows)
        else:
            has_older = more
            has_newer = cursor is not None and bool(rows) and bool(request_pages.user_page(
                conn, user_id, r.since, r.until, 1, (rows[0].created_at, rows[0].id), True, api_key))
        names = api_keys_repo.names(conn, user_id)
    return Page(r, [request_dict(x, names) for x in rows], limit,
                encode_cursor(rows[0]) if has_newer and rows else None,
                encode_cursor(rows[-1]) if has_older and rows else None, api_key)


def page_dict(p: Page) -> dict[str, Any]:
    return {"from": p.range.start.isoformat(), "to": p.range.end.isoformat(), "range": p.range.preset,
            "limit": p.limit, "requests": p.rows, "newer": p.newer, "older": p.older}


def export_rows(db: Database, claims: Mapping[str, Any], r: DateRange, api_key: str | None
                ) -> Iterator[list[Any]]:
    """The header, then every request in the range (newest first), read through a server-side cursor inside one
    transaction that stays open while the rows are sent."""
    with db.as_user(claims) as conn:
        user_id = str(claims["sub"])
        names = api_keys_repo.names(conn, user_id)
        rows = request_pages.stream_user_requests(conn, user_id, r.since, r.until, api_key)
        yield list(COLUMNS)
        for row in rows:
            item = request_dict(row, names)
            yield [item[k] for k in COLUMNS]
