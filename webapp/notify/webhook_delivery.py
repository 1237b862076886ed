"""One webhook attempt, as the Standard Webhooks specification describes it (standardwebhooks.com):

    webhook-id: msg_<delivery id>                 the same on every retry of one event to one endpoint
    webhook-timestamp: <unix seconds of this attempt>
    webhook-signature: v1,<base64 HMAC-SHA256(secret, "<id>.<timestamp>.<body>")>

The secret is `whsec_` + base64 of 32 random bytes; the HMAC key is the decoded bytes. The body is
`{"type", "timestamp", "data"}` and is stored with the delivery, so every retry sends the same bytes.

The connection goes through the same guarded transport as BYOK base URLs (webapp.providers.transport): the host is
resolved once, every address must be public, the socket is connected to a checked address and its peer checked
again; redirects are never followed. Only a 2xx answer counts as delivered. Of the answer, at most a 200-character
excerpt is kept."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass

import requests

from webapp.providers.base import UpstreamFailure
from webapp.providers.transport import build_session
from webapp.redact import redact

SECRET_PREFIX = "whsec_"  # noqa: S105 (the Standard Webhooks prefix, not a secret)
SECRET_BYTES = 32
EXCERPT_CHARS = 200
READ_LIMIT = 4096  # bytes of an answer read at most (the excerpt is cut from these)
USER_AGENT = "switchboard-webhooks/1"
CONNECT_TIMEOUT = 5.0


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def secret_key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX))


def message_id(delivery_id: str) -> str:
    return "msg_" + delivery_id.replace("-", "")


def sign(secret: str, msg_id: str, timestamp: int, body: str) -> str:
    """The `webhook-signature` value for one attempt."""
    digest = hmac.new(secret_key(secret), f"{msg_id}.{timestamp}.{body}".encode(), hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def headers_for(secret: str, delivery_id: str, body: str, now: float | None = None,
                previous: str | None = None) -> dict[str, str]:
    """The Standard Webhooks headers; with `previous` (a secret rotated less than a day ago) a second signature,
    space-separated, as the specification allows during a rotation."""
    msg_id = message_id(delivery_id)
    timestamp = int(now if now is not None else time.time())
    signatures = [sign(s, msg_id, timestamp, body) for s in (secret, previous) if s]
    return {"webhook-id": msg_id, "webhook-timestamp": str(timestamp), "webhook-signature": " ".join(signatures),
            "content-type": "application/json", "user-agent": USER_AGENT}


@dataclass(frozen=True)
class Outcome:
    """What one attempt got: the HTTP status (None when no answer), an excerpt of the answer, or an error."""

    ok: bool
    status: int | None
    excerpt: str | None
    error: str | None
    duration_ms: int


_sessions: dict[bool, requests.Session] = {}
_lock = threading.Lock()


def _session(guarded: bool) -> requests.Session:
    with _lock:
        session = _sessions.get(guarded)
        if session is None:
            session = _sessions[guarded] = build_session(guarded=guarded)
            session.headers["User-Agent"] = USER_AGENT
        return session


def excerpt_of(raw: bytes, *secrets: str | None) -> str:
    """At most EXCERPT_CHARS characters of an answer, whitespace collapsed, the signing secrets scrubbed."""
    text = redact(raw.decode("utf-8", errors="replace"), *secrets)
    return " ".join(text.split())[:EXCERPT_CHARS]


def _error_text(exc: BaseException) -> str:
    # The exception's own text may carry the full URL or internal detail; only its kind is said.
    if isinstance(exc, UpstreamFailure):
        return "refused: the address is not public" if exc.kind == "blocked_address" else "could not connect"
    if isinstance(exc, requests.ConnectTimeout):
        return "timed out connecting"
    if isinstance(exc, requests.ReadTimeout):
        return "timed out waiting for the answer"
    if isinstance(exc, requests.exceptions.SSLError):
        return "TLS failure"
    if isinstance(exc, requests.ConnectionError):
        return "could not connect"
    return f"request failed ({type(exc).__name__})"


def send(url: str, secret: str, delivery_id: str, body: str, *, timeout: float,
         allow_private: bool, previous: str | None = None) -> Outcome:
    """POST one signed delivery and report what happened (never raises for a network failure)."""
    started = time.monotonic()
    headers = headers_for(secret, delivery_id, body, previous=previous)

    def took() -> int:
        return int((time.monotonic() - started) * 1000)

    try:
        resp = _session(not allow_private).post(
            url, data=body.encode(), headers=headers, allow_redirects=False, stream=True,
            timeout=(min(CONNECT_TIMEOUT, timeout), timeout))
    except (UpstreamFailure, requests.RequestException) as exc:
        return Outcome(False, None, None, _error_text(exc), took())
    try:
        raw = _read_some(resp, started + timeout)
    finally:
        resp.close()
    status = resp.status_code
    ok = 200 <= status < 300
    error = None if ok else (f"HTTP {status}: redirects are not followed" if 300 <= status < 400
                             else f"HTTP {status}")
    return Outcome(ok, status, excerpt_of(raw, secret, previous), error, took())


def _read_some(resp: requests.Response, deadline: float) -> bytes:
    """At most READ_LIMIT bytes of the answer, read until `deadline` (a receiver dripping bytes cannot hold the
    worker longer than about one timeout)."""
    out = bytearray()
    try:
        for chunk in resp.iter_content(256):
            out += chunk
            if len(out) >= READ_LIMIT or time.monotonic() >= deadline:
                break
    except (requests.RequestException, OSError):
        pass  # the status is what counts; a broken body only shortens the excerpt
    return bytes(out[:READ_LIMIT])
