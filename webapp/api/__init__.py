"""Blueprints returning JSON: user, pricing, and the OpenAI-compatible /v1. CSRF-exempt: they authenticate with
bearer tokens, never with the session cookie."""

from __future__ import annotations

from typing import Any

from flask import Flask, Request, request

from webapp import jsonbody
from webapp.errors import AppError, ValidationError
from webapp.extensions import csrf

BODY_METHODS = ("POST", "PUT", "PATCH", "DELETE")


class StrictJSONRequest(Request):
    """`request.get_json()` parses with webapp.jsonbody (UTF-8, bounded depth, no NaN, no duplicate names), and a
    body that fails is a 400 `invalid_json` in the area's error shape, never a 500."""

    @property  # type: ignore[override]
    def json_module(self) -> Any:
        return jsonbody

    @json_module.setter
    def json_module(self, value: Any) -> None:
        """Flask assigns `app.json` to every request (flask.ctx); the strict parser stays."""

    def on_json_loading_failed(self, e: ValueError | None) -> Any:
        if e is None:  # not a JSON content type: Flask's 415
            return super().on_json_loading_failed(e)
        message = str(e) if isinstance(e, jsonbody.InvalidJSON) else "The body is not valid JSON."
        raise AppError(message, code="invalid_json", status=400, field="body", details={"fields": {"body": message}})


def _encodable(value: Any) -> bool:
    # Recursion is bounded: parsed bodies are at most jsonbody.MAX_DEPTH deep.
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


def parse_json_body() -> None:
    """Parse every JSON body once, before any view and so before any token is checked: a hostile body (nested a
    million levels, NaN, not UTF-8, ...) is a 400 `invalid_json` whoever sends it, and costs one bounded pass.
    The parsed body is cached, so the views' own `request.get_json(silent=True)` reuse it. A body sent with
    another content type is left alone (the views read None and answer 400 or 422)."""
    if request.method not in BODY_METHODS or not request.is_json:
        return
    data = request.get_data(cache=True)
    if not data or data.isspace():
        return
    body = request.get_json()  # raises the 400 through StrictJSONRequest.on_json_loading_failed
    # Strict UTF-8 bytes hold no surrogate: only a \u escape can make one, so a body without any is not walked.
    if request.blueprint in API_BLUEPRINTS and b"\\u" in data:
        refuse_lone_surrogates(body)


def refuse_lone_surrogates(body: Any) -> None:
    """JSON may escape a lone UTF-16 surrogate ("\\ud800"): Python then holds a string that neither Postgres nor an
    upstream request can encode, and the save or forward failed with a 500. Such a body is refused up front."""
    if body is None or _encodable(body):
        return
    if request.path.startswith("/v1/"):
        raise AppError("The request body must be valid JSON text (it holds a lone surrogate escape).",
                       code="invalid_json", status=400, field="body")
    raise ValidationError({"body": "Text must be valid Unicode (no lone surrogate escapes such as \\ud800)."})


def register_api(app: Flask) -> None:
    from webapp.api import admin, openapi, pricing, teams, user, v1

    app.request_class = StrictJSONRequest
    for bp in (v1.bp, user.bp, pricing.bp, admin.bp, openapi.bp, teams.bp, teams.admin_bp):
        csrf.exempt(bp)
        API_BLUEPRINTS.add(bp.name)
        app.register_blueprint(bp)
    from webapp.api import webhooks  # issue 16: webhook endpoints (user, team, site)

    for bp in webhooks.BLUEPRINTS:
        csrf.exempt(bp)
        API_BLUEPRINTS.add(bp.name)
        app.register_blueprint(bp)
    # First of all before-request hooks, whoever registered theirs earlier: the body is judged before anything
    # looks at the caller (token, session, rate limits).
    app.before_request_funcs.setdefault(None, []).insert(0, parse_json_body)
