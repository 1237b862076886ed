"""Blueprints returning JSON: user, pricing, and the OpenAI-compatible /v1. CSRF-exempt: they authenticate with
bearer tokens, never with the session cookie."""

from __future__ import annotations

from typing import Any

from flask import Flask, request

from webapp.errors import AppError, ValidationError
from webapp.extensions import csrf


def _encodable(value: Any) -> bool:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return False
        return True
    if isinstance(value, dict):
        return all(_encodable(k) and _encodable(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_encodable(v) for v in value)
    return True


API_BLUEPRINTS: set[str] = set()


def refuse_lone_surrogates() -> None:
    """JSON may escape a lone UTF-16 surrogate ("\\ud800"): Python then holds a string that neither Postgres nor an
    upstream request can encode, and the save or forward failed with a 500. Such a body is refused up front."""
    if request.blueprint not in API_BLUEPRINTS or request.method not in ("POST", "PUT", "PATCH"):
        return
    body = request.get_json(silent=True)  # cached: the view's own get_json(silent=True) reuses it
    if body is None or _encodable(body):
        return
    if request.path.startswith("/v1/"):
        raise AppError("The request body must be valid JSON text (it holds a lone surrogate escape).",
                       code="invalid_json", status=400, field="body")
    raise ValidationError({"body": "Text must be valid Unicode (no lone surrogate escapes such as \\ud800)."})


def register_api(app: Flask) -> None:
    from webapp.api import admin, openapi, pricing, user, v1

    for bp in (v1.bp, user.bp, pricing.bp, admin.bp, openapi.bp):
        csrf.exempt(bp)
        API_BLUEPRINTS.add(bp.name)
        app.register_blueprint(bp)
    app.before_request(refuse_lone_surrogates)
