"""The one error handler: JSON under /api/, OpenAI's error shape under /v1/, HTML (or an htmx flash) elsewhere.
No stack trace and no secret ever reaches a client; unexpected errors are logged with the request id only."""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from flask import Flask, Response, jsonify, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException, SecurityError

from webapp.errors import AppError
from webapp.services import messages_api

log = logging.getLogger("switchboard.errors")

_HTTP_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
               405: "method_not_allowed", 413: "payload_too_large", 415: "unsupported_media_type",
               429: "rate_limited", 500: "internal_error", 503: "service_unavailable"}
_OPENAI_TYPES = {401: "authentication_error", 403: "permission_error", 404: "invalid_request_error",
                 429: "rate_limit_error"}


def error_response(status: int, code: str, message: str, *, openai_type: str | None = None,
                   param: str | None = None, details: dict[str, Any] | None = None,
                   headers: dict[str, str] | None = None) -> Response:
    path = request.path
    if messages_api.is_messages_path(path):  # Anthropic's Messages API answers in Anthropic's error shape
        resp = jsonify(messages_api.error_body(status, code, message))
    elif path.startswith("/v1/") or path == "/v1":
        kind = openai_type or _OPENAI_TYPES.get(status) or ("api_error" if status >= 500 else "invalid_request_error")
        resp = jsonify({"error": {"message": message, "type": kind, "param": param, "code": code}})
    elif path.startswith("/api/"):
        body: dict[str, Any] = {"code": code, "message": message}
        if details:
            body.update(details)
        resp = jsonify({"error": body})
    elif request.headers.get("HX-Request"):
        resp = Response(render_template("_flash.html", level="error", message=message))
        resp.headers["HX-Retarget"] = "#flash"
        resp.headers["HX-Reswap"] = "innerHTML"
    else:
        resp = Response(render_template("error.html", status=status, message=message, code=code))
    resp.status_code = status
    for key, value in (headers or {}).items():
        resp.headers[key] = value
    return resp


def init_app(app: Flask) -> None:
    @app.errorhandler(AppError)
    def _app_error(exc: AppError) -> Response:
        return error_response(exc.status, exc.code, exc.message, openai_type=exc.openai_type, param=exc.field,
                              details=exc.details, headers=exc.headers)

    @app.errorhandler(CSRFError)
    def _csrf(exc: CSRFError) -> Response:
        return error_response(400, "csrf_failed", "The form expired or was not sent by this site. Reload and retry.")

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> Response:
        if isinstance(exc, SecurityError):  # untrusted Host: no URL can be built for it, answer plainly
            return Response("Bad request: untrusted host.", status=400, mimetype="text/plain")
        status = exc.code or 500
        return error_response(status, _HTTP_CODES.get(status, "http_error"), exc.description or exc.name)

    @app.errorhandler(psycopg.OperationalError)
    def _database(exc: psycopg.OperationalError) -> Response:
        # Connection lost mid-transaction, server restarting, pool exhausted (PoolTimeout is one): transient, so a
        # clear, retryable 503 rather than a 500 internal_error.
        log.error("database unavailable on %s %s: %s", request.method, request.path, type(exc).__name__)
        return error_response(503, "database_unavailable", "The database is unavailable for a moment. Try again.",
                              headers={"Retry-After": "1"})

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        log.error("unhandled error on %s %s: %s", request.method, request.path, type(exc).__name__,
                  exc_info=app.debug)
        return error_response(500, "internal_error", "Something went wrong on our side. Try again.")
