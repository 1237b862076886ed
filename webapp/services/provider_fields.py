"""Validation of the provider fields only an admin's create and edit forms carry (slug, extra headers), and the
one formatting of model rates every page uses (credits per million tokens beside the stored micro-credits per 1K).
No Flask, no database."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

from webapp.errors import ValidationError

SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")
# RFC 9110 token characters: what an HTTP field name may be made of.
HEADER_NAME_RE = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,64}$")
MAX_HEADERS = 10
MAX_HEADER_VALUE = 500
# Never settable per provider: authentication (the keys live encrypted in llm_admin_keys), hop-by-hop and framing
# headers the HTTP client owns, and the headers the adapters themselves send.
REFUSED_HEADERS = frozenset({
    "authorization", "proxy-authorization", "x-api-key", "api-key", "cookie", "set-cookie", "host",
    "content-length", "content-type", "content-encoding", "transfer-encoding", "connection", "keep-alive", "te",
    "trailer", "upgrade", "expect", "via", "forwarded", "accept", "accept-encoding", "anthropic-version",
})


def parse_slug(value: Any) -> str:
    """A new provider's slug: 1 to 40 of a-z, 0-9 and '-', starting with a letter or digit."""
    if not isinstance(value, str) or not SLUG_RE.fullmatch(value.strip()):
        raise ValidationError({"slug": "1 to 40 lowercase letters, digits and '-', starting with a letter or digit "
                                       "(for example openrouter)."})
    return value.strip()


def _header_error(name: Any, value: Any) -> str | None:
    if not isinstance(name, str) or not HEADER_NAME_RE.fullmatch(name):
        return "a header name is 1 to 64 letters, digits or !#$%&'*+-.^_`|~"
    lowered = name.lower()
    if lowered in REFUSED_HEADERS or lowered.startswith(("proxy-", "sec-")):
        return (f"{name} cannot be set here (authentication, connection and framing headers are the gateway's; "
                "store keys under Admin keys)")
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_HEADER_VALUE \
            or any(not (" " <= ch <= "~") for ch in value):
        return f"the value of {name} must be 1 to {MAX_HEADER_VALUE} printable ASCII characters"
    return None


def parse_extra_headers(value: Any) -> list[list[str]]:
    """Name/value pairs sent upstream with every request. Accepts [[name, value], ...], [{"name", "value"}, ...],
    an object {name: value}, or form text with one `Name: value` per line. Names are HTTP tokens, unique
    (case-insensitively), never an auth, hop-by-hop or framing header; at most 10."""
    pairs: list[tuple[Any, Any]] = []
    if value is None or value == "":
        return []
    if isinstance(value, str):
        if len(value) > MAX_HEADERS * (MAX_HEADER_VALUE + 70):
            raise ValidationError({"extra_headers": f"At most {MAX_HEADERS} headers."})
        for line in value.replace("\r\n", "\n").split("\n"):
            if not line.strip():
                continue
            name, sep, rest = line.partition(":")
            if not sep:
                raise ValidationError({"extra_headers": "One header per line, written Name: value."})
            pairs.append((name.strip(), rest.strip()))
    elif isinstance(value, dict):
        pairs = list(value.items())
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, dict) and set(item) <= {"name", "value"}:
                pairs.append((item.get("name"), item.get("value")))
            elif isinstance(item, list) and len(item) == 2:
                pairs.append((item[0], item[1]))
            else:
                raise ValidationError({"extra_headers": "Each header is {name, value} or [name, value]."})
    else:
        raise ValidationError({"extra_headers": "A list of {name, value} headers."})
    if len(pairs) > MAX_HEADERS:
        raise ValidationError({"extra_headers": f"At most {MAX_HEADERS} headers."})
    seen: set[str] = set()
    out: list[list[str]] = []
    for name, header_value in pairs:
        error = _header_error(name, header_value)
        if error:
            raise ValidationError({"extra_headers": error[0].upper() + error[1:] + "."})
        if name.lower() in seen:
            raise ValidationError({"extra_headers": f"{name} is given twice."})
        seen.add(name.lower())
        out.append([name, header_value.strip()])
    return out


def headers_text(headers: list[Any]) -> str:
    """The form's textarea value: one `Name: value` per line."""
    return "\n".join(f"{h[0]}: {h[1]}" for h in headers if isinstance(h, list | tuple) and len(h) == 2)


def per_million(rate: int | None) -> str:
    """Micro-credits per 1,000 tokens as credits per million tokens (x1000 tokens, /1,000,000 micro-credits)."""
    if rate is None:
        return ""
    value = (Decimal(rate) / 1000).normalize()
    return format(value, "f")


def rate_units(rate: int | None) -> str:
    """The one way a rate is written on a page: `150 µcr/1K (0.15 credits/M tokens)`."""
    if rate is None:
        return "same as input"
    return f"{rate:,} µcr/1K ({per_million(rate)} credits/M tokens)"
