"""The playground on the settings page: pick a model the user may call now, type a prompt, watch the answer stream.

POST /settings/playground (CSRF-protected form) checks the fields and answers the section with a stream box whose
`sse-connect` URL carries the request, encrypted and authenticated for this user (Fernet, a key derived from
SECRET_KEY) and valid for a short while: the prompt never appears readable in a URL, a history or a proxy's log. GET
/settings/playground/stream runs it through `Gateway.chat` -- the very path /v1/chat/completions takes, with the
signed-in user's claims: the same limits, credits, logs and receipt -- and relays the answer as server-sent events
(htmx's sse extension): `token` fragments, then the `receipt`, or a `failure` (an EventSource reserves `error`),
and always `done` last, so the browser closes the connection instead of reconnecting. The stream answers 200 even
for errors: an EventSource retries any other status forever."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import Blueprint, Response, current_app, render_template, request, stream_with_context, url_for
from flask_login import current_user
from markupsafe import escape

from webapp.errors import AppError
from webapp.local_engine import SLUG as LOCAL_SLUG

bp = Blueprint("playground", __name__)
TEMPLATE = "settings/_playground.html"
MAX_PROMPT = 4000
MAX_TOKENS = 256
TOKEN_SECONDS = 120  # how long the stream URL is valid after the form was sent
EVENT_ID = "playground"


def _svc() -> Any:
    return current_app.extensions["switchboard"]


def _sealer() -> Fernet:
    """Encrypts and authenticates the question a stream URL carries; its key is derived from SECRET_KEY, so every
    worker and instance shares it and nothing is stored."""
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"switchboard-playground-url").derive(
        current_app.config["SECRET_KEY"].encode())
    return Fernet(base64.urlsafe_b64encode(key))


def _seal(question: dict[str, str]) -> str:
    return _sealer().encrypt(json.dumps(question).encode()).decode()


def _open(token: str) -> Any:
    """The question of a stream URL, or None when it was tampered with, is not ours or is older than TOKEN_SECONDS."""
    try:
        return json.loads(_sealer().decrypt(token.encode(), ttl=TOKEN_SECONDS))
    except (InvalidToken, ValueError):
        return None


def _models() -> list[str]:
    """What the signed-in user may call right now, in their mode: the gateway's own /v1/models listing."""
    ids = [m["id"] for m in _svc().gateway.models(current_user.claims)]
    local = [i for i in ids if i.startswith(LOCAL_SLUG + "/")]
    return local + [i for i in ids if i not in local]  # the local model first: it answers out of the box


def _signup_grant() -> int:
    from webapp.repos import site_settings as site_repo

    with _svc().db.as_service() as conn:
        return int(site_repo.get(conn).signup_grant)


@bp.app_context_processor
def _playground_helpers() -> dict[str, Any]:
    return {"playground_models": _models, "playground_signup_grant": _signup_grant,
            "playground_local": LOCAL_SLUG}


def _section(status: int = 200, **ctx: Any) -> Response:
    ctx.setdefault("errors", {})
    ctx.setdefault("values", {})
    return Response(render_template(TEMPLATE, **ctx), status=status)


@bp.post("/settings/playground")
def ask() -> Response:
    if not current_user.is_authenticated:
        return Response("", status=401, headers={"HX-Redirect": url_for("auth.sign_in")})
    model = request.form.get("model", "")[:300]
    prompt = request.form.get("prompt", "")
    errors: dict[str, str] = {}
    if model not in _models():
        errors["model"] = "Choose a model from the list: the ones you may call right now."
    if not prompt.strip():
        errors["prompt"] = "Type a prompt."
    elif len(prompt) > MAX_PROMPT:
        errors["prompt"] = f"At most {MAX_PROMPT} characters here (the API takes longer prompts)."
    values = {"model": model, "prompt": prompt[:MAX_PROMPT]}
    if errors:
        return _section(422, errors=errors, values=values)
    token = _seal({"u": str(current_user.claims["sub"]), "m": model, "p": prompt})
    return _section(values=values, stream_url=url_for("playground.stream", t=token))


def _event(name: str, html: str) -> bytes:
    """One SSE event. Each carries an id, so a browser that reconnects after a dropped connection says so
    (Last-Event-ID) and is answered without asking the model a second time."""
    lines = html.replace("\r", "").split("\n")
    return (f"id: {EVENT_ID}\nevent: {name}\n" + "".join(f"data: {ln}\n" for ln in lines) + "\n").encode()


def _error(message: str) -> Iterator[bytes]:
    yield _event("failure", f'<p class="error" role="alert">{escape(message)}</p>')
    yield _event("done", "")


def _receipt_html(receipt: dict[str, Any]) -> str:
    return render_template("settings/_playground.html", receipt_only=True, receipt=receipt)


def _relay(result: Any) -> Iterator[bytes]:
    """The gateway's SSE body (OpenAI chunks, the usage chunk carrying the receipt, [DONE]) as htmx fragments."""
    receipt: dict[str, Any] | None = None
    try:
        for piece in result.stream:
            for line in piece.decode("utf-8", "replace").split("\n"):
                if line.startswith(": switchboard "):
                    receipt = json.loads(line[len(": switchboard "):])
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                chunk = json.loads(line[len("data: "):])
                if isinstance(chunk.get("error"), dict):
                    yield _event("failure", f'<p class="error" role="alert">{escape(chunk["error"].get("message"))}'
                                          "</p>")
                if isinstance(chunk.get("switchboard"), dict):
                    receipt = chunk["switchboard"]
                for choice in chunk.get("choices") or []:
                    text = ((choice or {}).get("delta") or {}).get("content")
                    if text:
                        yield _event("token", f"<span>{escape(text)}</span>")
        if receipt is not None:
            yield _event("receipt", _receipt_html(receipt))
    finally:
        close = getattr(result.stream, "close", None)
        if close is not None:
            close()  # a browser that left: the gateway bills what was delivered and frees the stream slot
    yield _event("done", "")


@bp.get("/settings/playground/stream")
def stream() -> Response:
    def answer(body: Iterator[bytes]) -> Response:
        resp = Response(body, mimetype="text/event-stream")
        resp.headers["Cache-Control"] = "no-cache"
        resp.headers["X-Accel-Buffering"] = "no"
        return resp

    if not current_user.is_authenticated:
        return answer(_error("Your session ended: sign in again."))
    if request.headers.get("Last-Event-ID"):  # the browser reconnecting: never ask (and charge) twice
        return answer(_error("The connection was interrupted: what arrived is above. Ask again for a full answer."))
    asked = _open(request.args.get("t", "")[:20_000])
    if asked is None:
        return answer(_error("This question expired: send it again."))
    if not isinstance(asked, dict) or asked.get("u") != str(current_user.claims["sub"]):
        return answer(_error("This question is not yours: send it again."))
    body = {"model": asked["m"], "messages": [{"role": "user", "content": asked["p"]}], "stream": True,
            "stream_options": {"include_usage": True}, "max_tokens": MAX_TOKENS}
    try:
        result = _svc().gateway.chat(current_user.claims, body, None, None)
    except AppError as exc:
        rid = exc.headers.get("X-Request-Id")
        return answer(_error(exc.message + (f" (request {rid})" if rid else "")))
    return answer(stream_with_context(_relay(result)))

