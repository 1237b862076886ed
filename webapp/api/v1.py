"""OpenAI-compatible routes: POST /v1/chat/completions and GET /v1/models."""

from __future__ import annotations

import uuid
from typing import Any

from flask import Blueprint, Response, current_app, g, jsonify, request

from webapp.auth.guards import token_required
from webapp.errors import AppError
from webapp.services.router import ByokHeaders

bp = Blueprint("v1", __name__, url_prefix="/v1")


def _gateway() -> Any:
    return current_app.extensions["switchboard"].gateway


def _byok_headers() -> ByokHeaders | None:
    key = request.headers.get("X-BYOK-API-Key", "").strip()
    if not key:
        if request.headers.get("X-BYOK-Base-URL") or request.headers.get("X-BYOK-Provider"):
            raise AppError("X-BYOK-Provider and X-BYOK-Base-URL need X-BYOK-API-Key.", code="byok_key_missing",
                           status=400, field="X-BYOK-API-Key")
        return None
    base_url = request.headers.get("X-BYOK-Base-URL", "").strip() or None
    if base_url and not base_url.startswith(("https://", "http://")):
        raise AppError("X-BYOK-Base-URL must be an http(s) URL.", code="invalid_base_url", status=400,
                       field="X-BYOK-Base-URL")
    return ByokHeaders(api_key=key, provider=request.headers.get("X-BYOK-Provider", "").strip() or None,
                       base_url=base_url)


@bp.after_request
def _request_id(resp: Response) -> Response:
    # Answers that never reached the gateway (401, 404, 413) get an id as well.
    resp.headers.setdefault("X-Request-Id", str(uuid.uuid4()))
    return resp


@bp.post("/chat/completions")
@token_required
def chat_completions() -> Any:
    body = request.get_json(silent=True)
    if body is None:
        raise AppError("The request body must be JSON.", code="invalid_json", status=400)
    result = _gateway().chat(g.claims, body, request.headers.get("X-Switchboard-Task"), _byok_headers())
    if result.stream is not None:
        resp = Response(result.stream, mimetype="text/event-stream")
        resp.headers.update(result.receipt.headers(final=False))
        resp.headers["Cache-Control"] = "no-cache"
        resp.headers["X-Accel-Buffering"] = "no"
        return resp
    resp = jsonify(result.body)
    resp.headers.update(result.receipt.headers())
    return resp


@bp.get("/models")
@token_required
def models() -> Any:
    return jsonify({"object": "list", "data": _gateway().models(g.claims)})


@bp.route("/<path:rest>", methods=["GET", "POST", "PUT", "DELETE", "PATCH"])
def unknown(rest: str) -> Response:
    if rest.rstrip("/") in ("chat/completions", "models"):
        raise AppError(f"/v1/{rest} does not accept {request.method}.", code="method_not_allowed", status=405)
    raise AppError(f"Unknown endpoint /v1/{rest}.", code="unknown_url", status=404)
