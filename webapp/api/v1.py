"""OpenAI-compatible routes: POST /v1/chat/completions, POST /v1/responses, POST /v1/embeddings, GET /v1/models and
GET /v1/models/{id}.

Clients that build URLs by joining strings send `/v1/chat/completions/` or `/v1//models`: those are answered as the
canonical path (never a redirect, whose HTML body an SDK would try to parse), anything else under /v1 is an
OpenAI-shaped 404."""

from __future__ import annotations

import uuid
from typing import Any

from flask import Blueprint, Response, current_app, g, jsonify, request
from werkzeug.routing import PathConverter

from webapp.api.schemas import parse
from webapp.api.schemas.chat import ChatCompletionRequest
from webapp.auth.guards import token_required
from webapp.errors import AppError
from webapp.services import embeddings as embeddings_service
from webapp.services import messages_api, responses_api
from webapp.services.router import ByokHeaders
from webapp.services.teams import SLUG_RE as TEAM_SLUG

bp = Blueprint("v1", __name__, url_prefix="/v1")


class _AnyPath(PathConverter):
    """A path that may start with or contain empty segments (`/v1//models`), which `path` does not match."""

    regex = ".*"
    part_isolating = False  # werkzeug would infer True from a regex without "/"


bp.record_once(lambda state: state.app.url_map.converters.setdefault("anypath", _AnyPath))
# Werkzeug merges doubled slashes with a 308 redirect by default; these routes take the path as sent instead.
_EXACT = {"merge_slashes": False}


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


def team_header() -> str | None:
    """X-Switchboard-Team: the slug of a team to bill (the caller must be a member)."""
    raw = request.headers.get("X-Switchboard-Team", "").strip()
    if not raw:
        return None
    if not TEAM_SLUG.fullmatch(raw):
        raise AppError("X-Switchboard-Team must be a team slug (lowercase letters, digits and dashes).",
                       code="invalid_team", status=400, field="X-Switchboard-Team")
    return raw


@bp.after_request
def _request_id(resp: Response) -> Response:
    # Answers that never reached the gateway (401, 404, 413) get an id as well.
    if "X-Request-Id" not in resp.headers:
        resp.headers.add("X-Request-Id", str(uuid.uuid4()))
    return resp


def _answer(body: Any, stream: Any, headers: dict[str, str]) -> Response:
    """A gateway result as the client gets it: an SSE stream (never buffered by a proxy) or a JSON body, with the
    receipt's headers."""
    if stream is not None:
        return Response(stream, mimetype="text/event-stream",
                        headers={**headers, "Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    resp = jsonify(body)
    if _BODY_HEADERS.isdisjoint(name.lower() for name in headers):
        resp.headers.extend(headers)  # appended: none of them is already set (update scans for each)
    else:
        resp.headers.update(headers)
    return resp


_BODY_HEADERS = frozenset({"content-type", "content-length"})  # what jsonify set


@bp.post("/chat/completions", **_EXACT)
@token_required
def chat_completions() -> Any:
    body = request.get_json(silent=True)
    if body is None:
        raise AppError("The request body must be JSON.", code="invalid_json", status=400)
    parse(ChatCompletionRequest, body, v1=True)  # the declared shape; the gateway applies the operator's limits
    result = _gateway().chat(g.claims, body, request.headers.get("X-Switchboard-Task"), _byok_headers(),
                             team_header(), kind=embeddings_service.CHAT_KIND)
    return _answer(result.body, result.stream, result.receipt.headers(final=result.stream is None))


@bp.post("/messages", **_EXACT)
@token_required
def messages() -> Any:
    """Anthropic's Messages API (JSON or SSE), run through the chat pipeline (services/messages_api.py)."""
    result = messages_api.create(_gateway(), g.claims, request.get_json(silent=True), request.headers.get(
        "X-Switchboard-Task"), _byok_headers(), team_header())
    return _answer(result.body, result.stream, result.headers)


@bp.post("/messages/count_tokens", **_EXACT)
@token_required
def messages_count_tokens() -> Any:
    """An estimate of a Messages request's input tokens (tiktoken, offline; nothing is charged)."""
    counted = messages_api.count_tokens(_gateway(), g.claims, request.get_json(silent=True), team_header())
    resp = jsonify(counted)
    resp.headers["X-Switchboard-Token-Count"] = f"estimate; tiktoken {counted['encoding']}"
    return resp


@bp.post("/responses", **_EXACT)
@token_required
def responses() -> Any:
    """OpenAI's Responses API: passed through or translated (services/responses_api.py)."""
    result = responses_api.create(_gateway(), g.claims, request.get_json(silent=True),
                                  request.headers.get("X-Switchboard-Task"), _byok_headers(), team_header())
    return _answer(result.body, result.stream, result.headers)


@bp.route("/responses/<response_id>", methods=["GET", "DELETE"], **_EXACT)
@token_required
def stored_response(response_id: str) -> Any:
    """A response the provider keeps, read or deleted with the caller's own key (services/responses_api.py)."""
    return jsonify(responses_api.stored(_gateway(), g.claims, response_id, _byok_headers(), team_header(),
                                        "DELETE" if request.method == "DELETE" else "GET"))


@bp.post("/embeddings", **_EXACT)
@token_required
def embeddings() -> Any:
    """Embeddings, billed by input tokens (services/embeddings.py)."""
    headers, body = embeddings_service.create(_gateway(), g.claims, request.get_json(silent=True),
                                              request.headers.get("X-Switchboard-Task"), _byok_headers(),
                                              team_header())
    resp = jsonify(body)
    resp.headers.update(headers)
    return resp


@bp.get("/models", **_EXACT)
@token_required
def models() -> Any:
    return jsonify({"object": "list", "data": _gateway().models(g.claims, team_header())})


@bp.get("/models/<path:model_id>", **_EXACT)
@token_required
def model(model_id: str) -> Any:
    """One model the caller can use now: `provider/model` (the id contains a slash) or a bare model id."""
    model_id = "/".join(p for p in model_id.split("/") if p)  # `models/x/` and `models/p//m` as sent by joiners
    found = _gateway().model(g.claims, model_id, team_header())
    if found is None:
        raise AppError(f"The model '{model_id}' does not exist or you do not have access to it.",
                       code="model_not_found", status=404)
    return jsonify(found)


@bp.route("/<anypath:rest>", methods=["GET", "POST", "PUT", "DELETE", "PATCH"], **_EXACT)
def canonical(rest: str) -> Any:
    """Every spelling of a /v1 path with extra or doubled slashes, answered as the canonical path."""
    parts = [p for p in rest.split("/") if p]
    if parts == ["chat", "completions"]:
        return _only("POST", chat_completions)
    if parts == ["models"]:
        return _only("GET", models)
    if parts == ["responses"]:
        return _only("POST", responses)
    if parts == ["embeddings"]:
        return _only("POST", embeddings)
    if len(parts) == 2 and parts[0] == "responses":
        if request.method not in ("GET", "HEAD", "DELETE"):
            raise AppError(f"{request.path} does not accept {request.method}.", code="method_not_allowed",
                           status=405, headers={"Allow": "GET, DELETE"})
        return stored_response(parts[1])
    if parts == ["messages"]:
        return _only("POST", messages)
    if parts == ["messages", "count_tokens"]:
        return _only("POST", messages_count_tokens)
    if len(parts) > 1 and parts[0] == "models":
        return _only("GET", model, "/".join(parts[1:]))
    raise AppError(f"Unknown endpoint /v1/{rest}.", code="unknown_url", status=404)


def _only(method: str, view: Any, *args: str) -> Any:
    allowed = (method, "HEAD") if method == "GET" else (method,)
    if request.method not in allowed:
        raise AppError(f"{request.path} does not accept {request.method}.", code="method_not_allowed", status=405,
                       headers={"Allow": method})
    return view(*args)
