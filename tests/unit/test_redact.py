"""redact() and RedactingFilter: provider keys, bearer tokens, key query strings, JWTs and explicit secrets never
reach a log line."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from webapp.logging_setup import JsonFormatter
from webapp.redact import RedactingFilter, redact

OPENAI = "sk-proj-Ab12Cd34Ef56Gh78Ij90Kl12Mn34Op56Qr78St90"
OPENAI_LEGACY = "sk-" + "A1b2C3d4" * 6
ANTHROPIC = "sk-ant-api03-" + "Zx9_Yw8-Vu7" * 8 + "AA"
GROQ = "gsk_" + "a1B2c3D4e5" * 5 + "zz"
GOOGLE = "AIzaSyD-" + "9tSrke72PouQMnMX7a" + "_1Qw2Er3Tt"
GITHUB_PAT = "github_pat_11ABCDEFG0" + "abcdefghij_KLMNOPQRST" * 3
GITHUB_CLASSIC = "ghp_" + "0123456789abcdefghijABCDEFGHIJklmnop"
JWT = ("eyJhbGciOiJFUzI1NiIsImtpZCI6ImsxIiwidHlwIjoiSldUIn0"
       ".eyJzdWIiOiIxMjM0NTY3OC05MGFiLWNkZWYtMTIzNC01Njc4OTBhYmNkZWYiLCJyb2xlIjoiYXV0aGVudGljYXRlZCJ9"
       ".MEUCIQDx7y3aV0p_hX-2kq9Wm4nBvC8sLzT1uR6eJfYgHdK0Ag")
OPAQUE_BEARER = "tok_9f8e7d6c5b4a39281706"

KEYS = [OPENAI, OPENAI_LEGACY, ANTHROPIC, GROQ, GOOGLE, GITHUB_PAT, GITHUB_CLASSIC, JWT]


def secret_part(key: str) -> str:
    """The part of a key that must disappear (a well-known prefix such as `ghp_` may stay)."""
    return key[-16:]


@pytest.mark.parametrize("key", KEYS, ids=["openai", "openai-legacy", "anthropic", "groq", "google", "github-pat",
                                           "github-classic", "jwt"])
@pytest.mark.parametrize("template", [
    "{}",
    "upstream said: invalid key {} (check it)",
    '{{"error": "Incorrect API key provided: {}"}}',
    "x-api-key: {}\nx-goog-api-key: {}",
    "key={},",
])
def test_provider_keys_are_redacted(key: str, template: str) -> None:
    text = template.format(key, key)
    out = redact(text)
    assert secret_part(key) not in out
    assert "[redacted]" in out


def test_surrounding_text_is_kept() -> None:
    out = redact(f"calling openai with {OPENAI} for model gpt-4o-mini")
    assert out == "calling openai with [redacted] for model gpt-4o-mini"


@pytest.mark.parametrize("header", [f"Bearer {OPAQUE_BEARER}", f"bearer {OPAQUE_BEARER}",
                                    f"BEARER   {OPAQUE_BEARER}", f"Bearer {JWT}", f"Bearer {OPENAI}"])
def test_bearer_tokens_are_redacted(header: str) -> None:
    out = redact(f"Authorization: {header}")
    assert OPAQUE_BEARER not in out and secret_part(JWT) not in out and secret_part(OPENAI) not in out
    assert out.lower().startswith("authorization: bearer")
    assert out.endswith("[redacted]")


@pytest.mark.parametrize(("url", "secret", "kept"), [
    ("https://generativelanguage.googleapis.com/v1beta/models/gemini:generate?key=plainsecretvalue&alt=sse",
     "plainsecretvalue", "&alt=sse"),
    (f"https://generativelanguage.googleapis.com/v1beta/models?key={GOOGLE}", secret_part(GOOGLE), ""),
    ("http://ollama.local/api?alt=sse&api_key=hunter2hunter2", "hunter2hunter2", "?alt=sse&"),
    ("http://x.test/?apikey=abc123xyz789 next", "abc123xyz789", " next"),
    ("http://x.test/path?TOKEN=opaque-token-1&page=2", "opaque-token-1", "&page=2"),
])
def test_key_query_strings_are_redacted(url: str, secret: str, kept: str) -> None:
    out = redact(url)
    assert secret not in out
    assert "=[redacted]" in out
    assert out.split("?")[0] == url.split("?")[0]  # the host and path stay readable
    assert kept in out  # other parameters survive


def test_jwts_are_redacted_anywhere() -> None:
    out = redact(f"verify failed for token {JWT}; retrying")
    assert secret_part(JWT) not in out and "eyJ" not in out
    assert out == "verify failed for token [redacted]; retrying"


def test_explicit_secrets_are_redacted() -> None:
    secret = "my-lmstudio-key+/=="
    out = redact(f"POST failed with key {secret} and again {secret}", secret, None, "")
    assert secret not in out and out.count("[redacted]") == 2


def test_explicit_secrets_shorter_than_six_are_ignored() -> None:
    # Replacing very short "secrets" would shred ordinary words; such values are not secrets worth the damage.
    assert redact("the cat sat", "cat") == "the cat sat"


def test_text_without_secrets_is_unchanged() -> None:
    text = "model gpt-4o-mini answered 200 in 312 ms; sk- prefix alone; Bearer; /v1/models?page=2; task-key=1"
    assert redact(text) == text


@pytest.mark.parametrize("token", ["abcd1234+/SECRETTAIL==", "abcd~1234SECRETTAIL"])
def test_bearer_b64token_characters_are_redacted(token: str) -> None:
    assert "SECRETTAIL" not in redact(f"Authorization: Bearer {token}")


# --- logging --------------------------------------------------------------------------------------------------------


@pytest.fixture()
def captured() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger wired like logging_setup.configure (JSON lines + the redaction filter), writing to a buffer."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger("switchboard.test_redact")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield logger, stream
    logger.removeHandler(handler)


def _record(msg: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord("switchboard.x", logging.WARNING, __file__, 1, msg, args, None)


def test_filter_scrubs_keys_in_args() -> None:
    record = _record("upstream %s refused key %s (attempt %d)", "openai", OPENAI, 2)
    assert RedactingFilter().filter(record) is True  # never drops a line, only cleans it
    message = record.getMessage()
    assert secret_part(OPENAI) not in message
    assert message == "upstream openai refused key [redacted] (attempt 2)"
    assert record.args is None  # the raw key is not kept in the record for a later handler


def test_filter_scrubs_keys_in_mapping_args_and_non_string_args() -> None:
    record = logging.LogRecord("switchboard.x", logging.INFO, __file__, 1, "headers=%(h)s", ({"h": {
        "Authorization": f"Bearer {OPAQUE_BEARER}", "x-api-key": ANTHROPIC}},), None)
    RedactingFilter().filter(record)
    message = record.getMessage()
    assert OPAQUE_BEARER not in message and secret_part(ANTHROPIC) not in message


def test_filter_leaves_clean_records_untouched() -> None:
    record = _record("served %s in %d ms", "gpt-4o-mini", 12)
    RedactingFilter().filter(record)
    assert record.msg == "served %s in %d ms" and record.args == ("gpt-4o-mini", 12)


def test_logged_line_is_scrubbed_end_to_end(captured: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = captured
    logger.warning("BYOK call to %s failed: %s", f"https://api.example/v1?key={GOOGLE}",
                   f"401 for Bearer {JWT} / {GROQ}")
    logger.info("fine: %s", "nothing secret")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [entry["level"] for entry in lines] == ["warning", "info"]
    raw = stream.getvalue()
    for key in (GOOGLE, JWT, GROQ):
        assert secret_part(key) not in raw
    assert lines[0]["msg"].startswith("BYOK call to https://api.example/v1?key=[redacted] failed: 401 for Bearer")
    assert lines[1]["msg"] == "fine: nothing secret"


def test_exception_text_in_message_is_scrubbed(captured: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = captured
    try:
        raise RuntimeError(f"provider rejected {OPENAI}")
    except RuntimeError as exc:
        logger.error("request failed: %s", exc)
    assert secret_part(OPENAI) not in stream.getvalue()


def test_malformed_log_call_does_not_raise_into_the_caller(captured: tuple[logging.Logger, io.StringIO],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    logger, _ = captured
    monkeypatch.setattr(logging, "raiseExceptions", False)  # production: handleError stays quiet
    logger.warning("two placeholders %s %s but one arg", "x")
