"""Date ranges for usage and analytics: a preset (7 days, 30 days, this month, last month, a year) or a custom
from/to, in whole UTC days, both ends inclusive. One parser for the user's usage, the requests list, the admin
analytics and every CSV export, as JSON query parameters or page form fields.

Parameters: `range` (a preset name, or `custom`) and `from`/`to` (ISO dates). `from`/`to` without `range` mean
custom (the routes' old parameters keep working); neither means the route's default preset. A range spans at most
366 days; `to` must not be before `from` (both refusals are reported on `from`). Errors are keyed by the field they
belong to, for a 422 `validation_error` (JSON) or a message beside that field (pages)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from webapp.errors import ValidationError

MAX_DAYS = 366
PRESETS: dict[str, str] = {
    "7d": "Last 7 days",
    "30d": "Last 30 days",
    "this_month": "This month",
    "last_month": "Last month",
    "year": "Last 366 days",
    "custom": "Custom",
}
DEFAULT = "30d"
DATE_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")  # ASCII digits only (fromisoformat also reads 20261123)
# A date at the very ends of the calendar would overflow the spans built from it (to + 1 day, from - 366 days).
EARLIEST, LATEST = date(1970, 1, 1), date(9998, 12, 31)


@dataclass(frozen=True)
class DateRange:
    start: date
    end: date  # inclusive
    preset: str  # a key of PRESETS
    errors: dict[str, str] = field(default_factory=dict)  # lenient parsing: what was wrong with the input

    @property
    def end_exclusive(self) -> date:
        return self.end + timedelta(days=1)

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    @property
    def since(self) -> datetime:
        """The first instant of the range (UTC)."""
        return datetime(self.start.year, self.start.month, self.start.day, tzinfo=UTC)

    @property
    def until(self) -> datetime:
        """The first instant after the range (UTC), exclusive."""
        e = self.end_exclusive
        return datetime(e.year, e.month, e.day, tzinfo=UTC)

    @property
    def label(self) -> str:
        if self.preset == "custom":
            return f"{self.start.isoformat()} to {self.end.isoformat()}"
        return PRESETS[self.preset]

    def as_args(self) -> dict[str, str]:
        """The range as the query parameters that name it (for links, exports and the report services)."""
        if self.preset == "custom":
            return {"range": "custom", "from": self.start.isoformat(), "to": self.end.isoformat()}
        return {"range": self.preset}

    def report_args(self) -> dict[str, str]:
        """Explicit from/to, as the report services read them."""
        return {"from": self.start.isoformat(), "to": self.end.isoformat()}


def today_utc() -> date:
    return datetime.now(UTC).date()


def preset_range(preset: str, today: date) -> tuple[date, date]:
    if preset == "7d":
        return today - timedelta(days=6), today
    if preset == "30d":
        return today - timedelta(days=29), today
    if preset == "this_month":
        return today.replace(day=1), today
    if preset == "last_month":
        last = today.replace(day=1) - timedelta(days=1)
        return last.replace(day=1), last
    if preset == "year":
        return today - timedelta(days=MAX_DAYS - 1), today
    raise KeyError(preset)


# The whitespace the OpenAPI document's \s ignores around a date, in every regex dialect (ECMAScript, Rust, Python):
# str.strip() would also drop \x1c-\x1f and \x85, which ECMAScript's \s does not match.
SPACE = (" \t\n\v\f\r\u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
         "\u2028\u2029\u202f\u205f\u3000")


def _text(args: Mapping[str, Any], name: str, *, strip: bool = True) -> str:
    value = args.get(name)
    if not isinstance(value, str):
        return ""
    return (value.strip(SPACE) if strip else value)[:40]


def _explicit_range(args: Mapping[str, Any]) -> str:
    """`range` as sent. A page form sends its preset <select> and, when its "Show these dates" button is the one
    pressed, also range=custom: custom wins."""
    getlist = getattr(args, "getlist", None)
    if getlist is not None and "custom" in getlist("range"):
        return "custom"
    return _text(args, "range", strip=False)  # a preset name exactly, as the document's enum says


def _parse_date(raw: str, name: str, errors: dict[str, str]) -> date | None:
    try:
        parsed = date.fromisoformat(raw) if DATE_RE.fullmatch(raw) else None
    except ValueError:
        parsed = None
    if parsed is None:
        errors[name] = "A date like 2026-11-23."
    elif not EARLIEST <= parsed <= LATEST:
        errors[name] = f"A date from {EARLIEST.isoformat()} to {LATEST.isoformat()}."
        parsed = None
    return parsed


def parse(args: Mapping[str, Any], *, default: str = DEFAULT, today: date | None = None,
          strict: bool = True) -> DateRange:
    """The range the query or form asks for. strict: a bad one raises ValidationError (fields `range`, `from`,
    `to`); otherwise it comes back as the default preset carrying the errors, for the page to show beside the
    fields."""
    today = today or today_utc()
    errors: dict[str, str] = {}
    preset = _explicit_range(args)
    raw_from, raw_to = _text(args, "from"), _text(args, "to")
    if not preset:
        preset = "custom" if raw_from or raw_to else default
    if preset not in PRESETS:
        errors["range"] = f"One of: {', '.join(PRESETS)}."
    # Dates sent with a preset are not used, but must still be dates: nothing malformed passes silently.
    given_from = _parse_date(raw_from, "from", errors) if raw_from else None
    given_to = _parse_date(raw_to, "to", errors) if raw_to else None
    if not errors and preset != "custom":
        start, end = preset_range(preset, today)
        return DateRange(start, end, preset)
    if not errors and not raw_from and not raw_to:
        errors["from"] = "Choose the first day, or a preset."
    elif not errors:
        # One end alone, as the routes' older from/to parameters allowed: `to` defaults to today (UTC), `from` to
        # the 30 days up to `to`.
        end_d = given_to or today
        start_d = given_from or end_d - timedelta(days=29)
        if end_d < start_d:
            errors["from"] = "The first day must not be after the last."
        elif (end_d - start_d).days + 1 > MAX_DAYS:
            errors["from"] = f"At most {MAX_DAYS} days at a time."
        else:
            return DateRange(start_d, end_d, "custom")
    if strict:
        raise ValidationError(errors, "The date range is not valid.")
    start, end = preset_range(default, today)
    return DateRange(start, end, default, errors)


def form_values(args: Mapping[str, Any], r: DateRange) -> dict[str, str]:
    """What the range picker shows: the input as typed when it was refused, else the range in force."""
    if r.errors:
        return {"range": _explicit_range(args) or "custom", "from": _text(args, "from"), "to": _text(args, "to")}
    return {"range": r.preset, "from": r.start.isoformat(), "to": r.end.isoformat()}
