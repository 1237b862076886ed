"""The settings page's "API keys" section: create a key (its secret shown once), list and revoke keys.

Registered on the settings page's blueprint and rendered from its template (block `api_keys`), like every other
section: an htmx request gets the block, any other request the whole page; a validation failure answers 422 with
the errors beside the fields."""

from __future__ import annotations

from typing import Any

from flask import Response, request
from flask_login import current_user

from webapp.errors import ValidationError
from webapp.services import api_keys
from webapp.web.settings_page import FormState, _catalog, _render, _svc, bp

BLOCK = "api_keys"
FORM_FIELDS = ("name", "expires_at", "monthly_credit_cap", "allow", "mode")


def listing() -> list[dict[str, Any]]:
    """The user's live keys as the section shows them."""
    return [api_keys.key_dict(k) for k in api_keys.listing(_svc().db, current_user.claims)]


def _section(state: FormState, status: int = 200, new_key: str | None = None) -> Response:
    resp = _render(BLOCK, state, status, api_keys=listing(), new_key=new_key)
    if new_key:
        resp.headers["Cache-Control"] = "no-store"  # the page holding the secret is never cached
    return resp


@bp.post("/settings/api-keys")
def create_api_key() -> Response:
    form = {name: request.form.get(name, "") for name in FORM_FIELDS}
    payload: dict[str, Any] = {k: v.strip() for k, v in form.items() if k != "mode"}
    payload["mode"] = form["mode"] or "user"
    payload["allow"] = api_keys.split_allow(payload.get("allow", ""))
    svc = _svc()
    try:
        key, secret = api_keys.create(svc.db, svc.settings, _catalog(), current_user.claims, payload)
    except ValidationError as exc:
        return _section(FormState(BLOCK, exc.errors, form), 422)
    return _section(FormState(BLOCK, message=f"Key “{key.name}” created."), new_key=secret)


@bp.post("/settings/api-keys/<uuid:key_id>/revoke")
def revoke_api_key(key_id: Any) -> Response:
    key = api_keys.revoke(_svc().db, current_user.claims, str(key_id))
    return _section(FormState(BLOCK, message=f"Key “{key.name}” revoked: it is refused from its next request on."))
