"""What each CSV export holds: the user's usage totals, the admin's analytics per day and the admin's filtered
request logs. Each is a generator of rows — the header first — that csv_export.response streams; the columns are
the JSON answer's fields, flattened, so a CSV row and the JSON item it comes from say the same."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import replace
from typing import Any

from webapp.db import Database
from webapp.errors import ValidationError
from webapp.repos import admin as admin_repo
from webapp.repos import request_pages
from webapp.services import admin_reports
from webapp.services.admin import admin_tx
from webapp.services.csv_export import table

METRICS = ("requests", "tokens_in", "tokens_out", "credits", "credits_micro", "errors", "cached_tokens",
           "cache_write_tokens", "reasoning_tokens")
ANALYTICS_COLUMNS = ("day", "requests", "tokens", "credits", "credits_micro", "errors")
LOG_COLUMNS = ("request_id", "created_at", "user_id", "email", "mode", "provider", "model", "task", "key_source",
               "admin_key_id", "admin_key_last4", "admin_key_label", "tokens_in", "tokens_out", "usage", "credits",
               "credits_micro", "multiplier", "fallback_path", "stream", "status", "error_code", "latency_ms",
               "api_key_id", "api_key_name", "api_key_prefix", "cached_tokens", "cache_write_tokens",
               "reasoning_tokens")


def usage_columns(group_by: list[str]) -> list[str]:
    cols: list[str] = []
    for g in group_by:
        cols += [g, "api_key_name"] if g == "api_key" else [g]
    return [*cols, *METRICS]


def usage_rows(summary: Mapping[str, Any]) -> Iterator[list[Any]]:
    """The user's usage buckets (one row per group, as the JSON `buckets`)."""
    return table(usage_columns(list(summary["group_by"])), summary["buckets"])


def analytics_rows(analytics: Mapping[str, Any]) -> Iterator[list[Any]]:
    """The admin analytics' `days`: every day of the range, oldest first."""
    return table(ANALYTICS_COLUMNS, analytics["days"])


def log_row(item: Mapping[str, Any]) -> dict[str, Any]:
    """A RequestLog JSON item (admin_reports.log_dict) flattened to the LOG_COLUMNS."""
    admin_key, api_key = item.get("admin_key") or {}, item.get("api_key") or {}
    return {**item, "admin_key_id": admin_key.get("id"), "admin_key_last4": admin_key.get("last4"),
            "admin_key_label": admin_key.get("label"), "api_key_id": api_key.get("id"),
            "api_key_name": api_key.get("name"), "api_key_prefix": api_key.get("prefix")}


def admin_log_rows(db: Database, claims: Mapping[str, Any], args: Mapping[str, Any]) -> Iterator[list[Any]]:
    """Every request log row the admin's filters match (user, provider, mode, status, from/to, api_key — as the
    JSON route reads them; paging parameters are checked, then ignored), newest first, through a server-side cursor."""
    errors: dict[str, str] = {}
    f, user_text = admin_reports._log_filter(args, errors)
    admin_reports._page(args, errors)  # not used, but checked as the JSON route checks them: nothing malformed
    admin_reports._cursor(args, errors)  # passes silently
    if errors:
        raise ValidationError(errors)
    with admin_tx(db, claims) as conn, admin_repo.service_role(conn):
        if user_text:
            f = replace(f, user_ids=admin_repo.user_ids_by_email(conn, user_text))
        rows = request_pages.stream_admin_logs(conn, f)
        yield list(LOG_COLUMNS)
        for entry in rows:
            item = log_row(admin_reports.log_dict(entry))
            yield [item.get(k) for k in LOG_COLUMNS]
