"""Scrub secrets from any text that may reach a log line, an error or a response."""

from __future__ import annotations

import logging
import re

_PATTERNS = [
    re.compile(r"sk-[A-Za-z0-9_\-]{8,}"),
    re.compile(r"sk-ant-[A-Za-z0-9_\-]{8,}"),
    re.compile(r"gsk_[A-Za-z0-9]{8,}"),
    re.compile(r"AIza[0-9A-Za-z_\-]{20,}"),
    re.compile(r"(gh[pousr]_|github_pat_)[A-Za-z0-9_]{10,}"),
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/\-]{4,}=*"),
    re.compile(r"(?i)([?&](key|api_key|apikey|token)=)[^&\s]+"),
    re.compile(r"eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]*"),
]


def redact(text: str, *secrets: str | None) -> str:
    for secret in secrets:
        if secret and len(secret) >= 6:
            text = text.replace(secret, "[redacted]")
    for pattern in _PATTERNS:
        text = pattern.sub(lambda m: (m.group(1) if m.re.groups and m.group(1) else "") + "[redacted]", text)
    return text


class RedactingFilter(logging.Filter):
    """Attached to every handler: a log record's final message is scrubbed before it is written."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            return True  # a malformed log call: let logging report it the usual way, never raise into the caller
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True
