"""CSV exports, streamed: rows go from a server-side cursor through the csv module to the client in ~64 KB chunks,
so an export of a million rows holds one batch in memory, never the whole file.

Cells are quoted by the csv module (commas, quotes, newlines survive). A text cell that a spreadsheet would run as
a formula — it starts with `=`, `+`, `-`, `@`, a tab or a carriage return — is written with a leading `'`, which
spreadsheets show as text (OWASP's advice against CSV injection); numbers are written as numbers. Files are UTF-8
with CRLF line ends, the header row first."""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from flask import Response

from webapp.errors import ValidationError
from webapp.services.date_ranges import DateRange

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
CHUNK = 64 * 1024  # characters per piece of the response
FORMATS = ("json", "csv")


def wants_csv(args: Mapping[str, Any]) -> bool:
    """`format=csv` asks for CSV; absent, empty or `json` for JSON; anything else is a 422 on `format`."""
    raw = args.get("format")
    value = raw if isinstance(raw, str) else ""
    if value not in ("", *FORMATS):
        raise ValidationError({"format": "json or csv."})
    return value == "csv"


def cell(value: Any) -> Any:
    """One value as a CSV cell: text that would start a formula gets a leading `'`; None is empty; lists are
    joined with " > " (a fallback path); dates are ISO 8601."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | Decimal):
        return value
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, list | tuple):
        value = " > ".join(str(v) for v in value)
    text = str(value)
    return "'" + text if text.startswith(FORMULA_START) else text


class _Buffer:
    """The csv writer's file: collects one chunk of text."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.size = 0

    def write(self, text: str) -> int:
        self.parts.append(text)
        self.size += len(text)
        return len(text)

    def take(self) -> bytes:
        data = "".join(self.parts).encode("utf-8")
        self.parts, self.size = [], 0
        return data


def encode(rows: Iterable[Sequence[Any]], chunk: int = CHUNK) -> Iterator[bytes]:
    """The rows (the header first) as CSV bytes, one chunk of about `chunk` characters at a time."""
    buf = _Buffer()
    writer = csv.writer(buf, lineterminator="\r\n")
    for row in rows:
        writer.writerow([cell(v) for v in row])
        if buf.size >= chunk:
            yield buf.take()
    if buf.size:
        yield buf.take()


class Stream:
    """A response body that has already produced its first chunk — so a refused token, a missing permission or a
    failed query is an ordinary error response, not a broken download — and closes the generator (and with it the
    database transaction and its cursor) when the server is done with it, finished or not."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._first: bytes | None = next(chunks, b"")

    def __iter__(self) -> Stream:
        return self

    def __next__(self) -> bytes:
        if self._first is not None:
            first, self._first = self._first, None
            return first
        return next(self._chunks)

    def close(self) -> None:
        close = getattr(self._chunks, "close", None)
        if close is not None:
            close()


SAFE_NAME = re.compile(r"[^a-z0-9-]+")


def filename(stem: str, r: DateRange | None = None) -> str:
    """switchboard-<stem>[-<from>-to-<to>].csv, lowercase letters, digits and dashes only."""
    name = "switchboard-" + stem
    if r is not None:
        name += f"-{r.start.isoformat()}-to-{r.end.isoformat()}"
    return re.sub("-{2,}", "-", SAFE_NAME.sub("-", name.lower())).strip("-")[:120] + ".csv"


def response(rows: Iterator[Sequence[Any]], name: str) -> Response:
    """A streamed CSV download of `rows` (a generator: the header, then each row)."""
    resp = Response(Stream(encode(rows)), mimetype="text/csv")
    resp.headers["Content-Type"] = "text/csv; charset=utf-8"
    resp.headers["Content-Disposition"] = f'attachment; filename="{name}"'
    resp.headers["Cache-Control"] = "no-store"
    return resp


def table(header: Sequence[str], items: Iterable[Mapping[str, Any]]) -> Iterator[list[Any]]:
    """The header, then each item's values in the header's order."""
    yield list(header)
    for item in items:
        yield [item.get(k) for k in header]
