"""What admins read: request logs (filtered, paginated, each with its receipt), analytics and the audit log.
Read as the admin, stepping up to service_role only to join user emails from auth.users."""

from __future__ import annotations

import base64
import binascii
import math
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

from webapp.db import Database
from webapp.errors import NotFound, ValidationError
from webapp.repos import admin as admin_repo
from webapp.repos import rollups
from webapp.services import admin_charts
from webapp.services.admin import admin_tx
from webapp.services.credits import format_credits

PER_PAGE, MAX_PER_PAGE = 50, 200
MAX_PAGE = 1_000_000
NUMBER_RE = re.compile(r"[0-9]{1,7}")  # ASCII digits only: str.isdigit() also accepts '²', which int() refuses
SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")
STATUS_RE = re.compile(r"^[1-5][0-9][0-9]$")
FILTERS = ("user", "provider", "mode", "status", "from", "to", "api_key")
CURSOR_RE = re.compile(r"[A-Za-z0-9_-]{1,120}")


def encode_cursor(created_at: datetime, row_id: str) -> str:
    """A page boundary: urlsafe base64 of "<created_at iso>|<id>", unpadded (opaque to clients)."""
    return base64.urlsafe_b64encode(f"{created_at.isoformat()}|{row_id}".encode()).decode().rstrip("=")


def decode_cursor(value: str) -> tuple[datetime, str] | None:
    """The (created_at, id) a cursor names, or None when it is not one of ours."""
    if not CURSOR_RE.fullmatch(value):
        return None
    try:
        when, _, row_id = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode().partition("|")
        parsed = datetime.fromisoformat(when)
        return (parsed, str(uuid.UUID(row_id))) if parsed.tzinfo else None
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return None


def _page(args: Mapping[str, Any], errors: dict[str, str]) -> tuple[int, int]:
    page, per_page = str(args.get("page") or "1"), str(args.get("per_page") or PER_PAGE)
    if not NUMBER_RE.fullmatch(page) or not 1 <= int(page) <= MAX_PAGE:
        errors["page"] = f"A page number from 1 to {MAX_PAGE:,}."
    if not NUMBER_RE.fullmatch(per_page) or not 1 <= int(per_page) <= MAX_PER_PAGE:
        errors["per_page"] = f"From 1 to {MAX_PER_PAGE} rows per page."
    if "page" in errors or "per_page" in errors:
        return 1, PER_PAGE
    return int(page), int(per_page)


def _date(args: Mapping[str, Any], name: str, errors: dict[str, str]) -> date | None:
    raw = str(args.get(name) or "").strip()
    if not raw:
        return None
    try:
        parsed = date.fromisoformat(raw)
    except ValueError:
        parsed = None
    # A date at the very ends of the calendar would overflow the ranges built from it (to + 1 day, to - 29 days).
    if parsed is None or not date.min + timedelta(days=366) <= parsed < date.max:
        errors[name] = "A date like 2026-11-23."
        return None
    return parsed


@dataclass(frozen=True)
class Pager:
    page: int
    per_page: int
    total: int
    more: bool = False  # the logs: more rows than the count was taken to (the total says "at least")

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.total / self.per_page))

    @property
    def has_prev(self) -> bool:
        return self.page > 1

    @property
    def has_next(self) -> bool:
        return self.more or self.page < self.pages

    @property
    def total_text(self) -> str:
        return f"{self.total:,}+" if self.more else f"{self.total:,}"


# -- request logs -------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LogsPage:
    filters: dict[str, str]  # as typed, to refill the form and build page links
    rows: list[admin_repo.LogEntry]
    pager: Pager
    providers: list[str]
    errors: dict[str, str] = field(default_factory=dict)
    older: str | None = None  # cursor of the next page (older rows), None on the last page
    newer: str | None = None  # cursor of the previous page (newer rows), None on the first page


def _cursor(args: Mapping[str, Any], errors: dict[str, str]) -> tuple[str, tuple[datetime, str]] | None:
    """("before" or "after", position) from the args, or None for the first page."""
    for name in ("before", "after"):
        raw = str(args.get(name) or "").strip()
        if raw:
            position = decode_cursor(raw)
            if position is None:
                errors[name] = "A page cursor as this API returned it."
                return None
            return name, position
    return None


def _log_filter(args: Mapping[str, Any], errors: dict[str, str]) -> tuple[admin_repo.LogFilter, str]:
    """The filter, and the user text still to resolve to ids (an email fragment) or '' when none."""
    provider = str(args.get("provider") or "").strip()
    mode = str(args.get("mode") or "").strip()
    status = str(args.get("status") or "").strip()
    user = str(args.get("user") or "").strip()
    if provider and not SLUG_RE.fullmatch(provider):
        errors["provider"] = "A provider slug."
    if mode not in ("", "member", "byok"):
        errors["mode"] = "member or byok."
    if status not in ("", "ok", "error") and not STATUS_RE.fullmatch(status):
        errors["status"] = "ok, error, or an HTTP status such as 402."
    if len(user) > 200:
        errors["user"] = "At most 200 characters."
    elif "\x00" in user:  # Postgres text cannot hold NUL
        errors["user"] = "No NUL characters."
    start, end = _date(args, "from", errors), _date(args, "to", errors)
    if start and end and start > end:
        errors["from"] = "The start must not be after the end."
    api_key = str(args.get("api_key") or "").strip()
    try:
        api_key = str(uuid.UUID(api_key)) if api_key else ""
    except ValueError:
        errors["api_key"] = "A personal API key's id."
    user_ids: list[str] | None = None
    try:
        user_ids = [str(uuid.UUID(user))] if user else None
        user = ""
    except ValueError:
        pass
    f = admin_repo.LogFilter(user_ids=user_ids, provider=provider or None, mode=mode or None,
                             status=status or None, start=start,
                             end_exclusive=end + timedelta(days=1) if end else None,
                             api_key_id=api_key or None)
    return f, user


def logs(db: Database, claims: Mapping[str, Any], args: Mapping[str, Any], *, strict: bool = True) -> LogsPage:
    """Request logs, newest first. Filters: user (email fragment or id), provider, mode, status (ok, error or a
    code), from/to (dates, inclusive). With strict, a bad filter raises ValidationError; otherwise the page
    carries the errors and shows no rows."""
    errors: dict[str, str] = {}
    f, user_text = _log_filter(args, errors)
    page, per_page = _page(args, errors)
    cursor = _cursor(args, errors)
    if cursor is None and "page" not in errors and (page - 1) * per_page > admin_repo.COUNT_CAP:
        errors["page"] = f"Page numbers reach the first {admin_repo.COUNT_CAP:,} rows; page on with the Older link."
    if errors and strict:
        raise ValidationError(errors)
    filters = {k: str(args.get(k) or "").strip() for k in FILTERS}
    with admin_tx(db, claims) as conn, admin_repo.service_role(conn):
        providers = admin_repo.log_providers(conn)
        if errors:
            return LogsPage(filters, [], Pager(1, per_page, 0), providers, errors)
        if user_text:
            f = replace(f, user_ids=admin_repo.user_ids_by_email(conn, user_text))
        before = cursor[1] if cursor and cursor[0] == "before" else None
        after = cursor[1] if cursor and cursor[0] == "after" else None
        rows, total = admin_repo.search_logs(conn, f, per_page + 1, (page - 1) * per_page, before=before,
                                             after=after)
    more = total > admin_repo.COUNT_CAP
    pager = Pager(page, per_page, min(total, admin_repo.COUNT_CAP), more)
    # One row past the page says whether an older page exists (from `after`, the rows were read oldest first).
    extra = len(rows) > per_page
    rows = rows[1:] if extra and after else rows[:per_page]
    has_older = extra if not after else True
    has_newer = (extra if after else bool(before)) or (cursor is None and page > 1)
    older = encode_cursor(rows[-1].created_at, rows[-1].id) if rows and has_older else None
    newer = encode_cursor(rows[0].created_at, rows[0].id) if rows and has_newer else None
    return LogsPage(filters, rows, pager, providers, older=older, newer=newer)


def receipt(db: Database, claims: Mapping[str, Any], request_id: str) -> admin_repo.LogEntry:
    try:
        rid = str(uuid.UUID(str(request_id)))
    except ValueError:
        raise NotFound("No request with that id.", code="request_not_found") from None
    with admin_tx(db, claims) as conn, admin_repo.service_role(conn):
        entry = admin_repo.get_log(conn, rid)
    if entry is None:
        raise NotFound("No request with that id.", code="request_not_found")
    return entry


def log_dict(e: admin_repo.LogEntry) -> dict[str, Any]:
    return {"request_id": e.request_id, "user_id": e.user_id, "email": e.email, "mode": e.mode,
            "provider": e.provider, "model": e.model, "task": e.task, "key_source": e.key_source,
            "admin_key": ({"id": e.admin_key_id, "last4": e.admin_key_last4, "label": e.admin_key_label}
                          if e.admin_key_id else None),
            "tokens_in": e.tokens_in, "tokens_out": e.tokens_out, "usage": e.usage_source,
            "credits": format_credits(e.credits), "credits_micro": e.credits,
            "multiplier": format(e.multiplier.normalize(), "f") if e.multiplier is not None else None,
            "fallback_path": list(e.fallback_path), "stream": e.stream, "status": e.status,
            "error_code": e.error_code, "latency_ms": e.latency_ms, "created_at": e.created_at.isoformat(),
            "api_key": ({"id": e.api_key_id, "name": e.api_key_name, "prefix": e.api_key_prefix}
                        if e.api_key_id else None),
            "cached_tokens": e.cached_tokens, "cache_write_tokens": e.cache_write_tokens,
            "reasoning_tokens": e.reasoning_tokens}


def logs_dict(p: LogsPage) -> dict[str, Any]:
    return {"logs": [log_dict(r) for r in p.rows], "page": p.pager.page, "per_page": p.pager.per_page,
            "total": p.pager.total, "total_exact": not p.pager.more, "pages": p.pager.pages,
            "next_cursor": p.older, "prev_cursor": p.newer,
            "filters": {k: v for k, v in p.filters.items() if v}}


# -- analytics ----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Analytics:
    start: date
    end: date
    days: list[admin_repo.DayTotals]
    charts: list[admin_charts.BarChart]
    providers: list[admin_repo.GroupTotals]
    provider_shares: list[float]
    modes: dict[str, admin_repo.GroupTotals]
    byok_member_equivalent: int
    top_users: list[admin_repo.UserTotals]
    error_codes: list[admin_repo.GroupTotals]
    shortfalls: admin_repo.Shortfalls
    errors: dict[str, str] = field(default_factory=dict)
    split: tuple[int, int, int] = (0, 0, 0)  # of all tokens: cached, cache-write (in) and reasoning (out)

    @property
    def requests(self) -> int:
        return sum(d.requests for d in self.days)

    @property
    def failed(self) -> int:
        return sum(d.errors for d in self.days)

    @property
    def error_rate(self) -> float:
        return self.failed / self.requests if self.requests else 0.0


def parse_range(args: Mapping[str, Any], errors: dict[str, str]) -> tuple[date, date]:
    """from/to inclusive; by default the last 30 days (UTC). At most 366 days."""
    today = datetime.now(UTC).date()
    end = _date(args, "to", errors) or today
    start = _date(args, "from", errors) or end - timedelta(days=29)
    if start > end:
        errors["from"] = "The start must not be after the end."
    elif (end - start).days > 365:
        errors["from"] = "At most 366 days at a time."
    if errors:
        return today - timedelta(days=29), today
    return start, end


def _empty_mode(mode: str) -> admin_repo.GroupTotals:
    return admin_repo.GroupTotals(mode, 0, 0, 0, 0, 0)


def analytics(db: Database, claims: Mapping[str, Any], args: Mapping[str, Any], *, strict: bool = True
              ) -> Analytics:
    """Requests, tokens and credits per day and per provider, top users, error rates, and member-mode cost
    against BYOK traffic (with what that traffic would have cost in member mode at today's prices)."""
    errors: dict[str, str] = {}
    start, end = parse_range(args, errors)
    if errors and strict:
        raise ValidationError(errors)
    stop = end + timedelta(days=1)
    with admin_tx(db, claims) as conn, admin_repo.service_role(conn):
        report = rollups.platform_report(conn, start, stop)
        top = rollups.top_users(conn, start, stop, 10)
    providers, codes, short = report.providers, report.error_codes, report.shortfalls
    modes = {m.key: m for m in report.modes}
    equivalent = report.byok_member_equivalent
    by_day = {d.day: d for d in report.days}
    span = [start + timedelta(days=i) for i in range((end - start).days + 1)]
    full = [by_day.get(d) or admin_repo.DayTotals(d, 0, 0, 0, 0) for d in span]
    charts = [
        admin_charts.bar_chart("Requests per day", [(d.day.isoformat(), d.requests) for d in full], "requests"),
        admin_charts.bar_chart("Tokens per day", [(d.day.isoformat(), d.tokens) for d in full], "tokens"),
        admin_charts.bar_chart("Credits charged per day", [(d.day.isoformat(), d.credits) for d in full],
                               "credits", format_credits),
    ]
    return Analytics(start, end, full, charts, providers, admin_charts.shares([p.requests for p in providers]),
                     {m: modes.get(m) or _empty_mode(m) for m in ("member", "byok")}, equivalent, top, codes,
                     short, errors, report.split)


def _totals_dict(t: admin_repo.GroupTotals) -> dict[str, Any]:
    return {"requests": t.requests, "tokens_in": t.tokens_in, "tokens_out": t.tokens_out,
            "credits": format_credits(t.credits), "credits_micro": t.credits, "errors": t.errors,
            "error_rate": round(t.errors / t.requests, 4) if t.requests else 0.0}


def analytics_dict(a: Analytics) -> dict[str, Any]:
    return {
        "from": a.start.isoformat(), "to": a.end.isoformat(),
        "totals": {"requests": a.requests, "errors": a.failed, "error_rate": round(a.error_rate, 4),
                   **dict(zip(("cached_tokens", "cache_write_tokens", "reasoning_tokens"), a.split, strict=True))},
        "days": [{"day": d.day.isoformat(), "requests": d.requests, "tokens": d.tokens,
                  "credits": format_credits(d.credits), "credits_micro": d.credits, "errors": d.errors}
                 for d in a.days],
        "providers": [{"provider": p.key, **_totals_dict(p)} for p in a.providers],
        "modes": {"member": _totals_dict(a.modes["member"]),
                  "byok": {**_totals_dict(a.modes["byok"]),
                           "member_equivalent_credits": format_credits(a.byok_member_equivalent)}},
        "top_users": [{"user_id": u.user_id, "email": u.email, "requests": u.requests, "tokens": u.tokens,
                       "credits": format_credits(u.credits)} for u in a.top_users],
        "error_codes": [{"code": c.key, "requests": c.requests} for c in a.error_codes],
        "shortfalls": {"requests": a.shortfalls.requests, "uncollected": format_credits(a.shortfalls.uncollected),
                       "uncollected_micro": a.shortfalls.uncollected,
                       "corrected_usage": a.shortfalls.corrected},
    }


# -- audit --------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class AuditPage:
    rows: list[admin_repo.AuditEntry]
    pager: Pager
    action: str


def audit(db: Database, claims: Mapping[str, Any], args: Mapping[str, Any]) -> AuditPage:
    """Every admin change, newest first; `action` filters by prefix (provider, key, credits)."""
    errors: dict[str, str] = {}
    page, per_page = _page(args, errors)
    action = str(args.get("action") or "").strip()
    if not re.fullmatch(r"[a-z_.]{0,80}", action):
        errors["action"] = "An action or its prefix, such as provider or key.revoke."
    if errors:
        raise ValidationError(errors)
    with admin_tx(db, claims) as conn, admin_repo.service_role(conn):
        rows, total = admin_repo.audit_entries(conn, per_page, (page - 1) * per_page, action or None)
    return AuditPage(rows, Pager(page, per_page, total), action)


@dataclass(frozen=True)
class Change:
    """One line of an audit entry's diff: a field (dotted for nested objects), its old and new value as text
    (None: absent on that side)."""

    field: str
    old: str | None
    new: str | None


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix or "value": value}


def _text(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(_text(v) for v in value) or "(empty)"
    return str(value)


def diff(before: Any, after: Any) -> list[Change]:
    """An audit entry's before and after as field: old → new, in a stable order; unchanged fields left out unless
    nothing changed at all (then every field, so the line still says what was recorded)."""
    old = _flatten(before) if before is not None else {}
    new = _flatten(after) if after is not None else {}
    fields = list(dict.fromkeys([*old, *new]))
    changes = [Change(f, _text(old[f]) if f in old else None, _text(new[f]) if f in new else None) for f in fields]
    moved = [c for c in changes if c.old != c.new]
    return moved or changes


def audit_dict(p: AuditPage) -> dict[str, Any]:
    return {"entries": [{"id": e.id, "actor_id": e.actor_id, "actor": e.actor_email, "action": e.action,
                         "target": e.target, "before": e.before, "after": e.after,
                         "changes": [{"field": c.field, "before": c.old, "after": c.new}
                                     for c in diff(e.before, e.after)],
                         "created_at": e.created_at.isoformat()} for e in p.rows],
            "page": p.pager.page, "per_page": p.pager.per_page, "total": p.pager.total, "pages": p.pager.pages}
