"""Authentication for the JSON and /v1 routes: a verified Supabase access token in `Authorization: Bearer`."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Response, current_app, g, redirect, request
from flask_login import current_user, login_url

from webapp.errors import Forbidden, Unauthorized
from webapp.services import api_keys

F = TypeVar("F", bound=Callable[..., Any])


def bearer_claims() -> dict[str, Any]:
    """Verified claims from `Authorization: Bearer <Supabase access token>`, or, for a personal API key
    (`Bearer sb_...` or `X-Api-Key: sb_...`), claims the request's first round trip resolves to the key's owner."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if not header.strip() and request.headers.get("X-Api-Key", "").strip():
        scheme, token = "bearer", request.headers["X-Api-Key"].strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("Send a Supabase access token or a personal API key as `Authorization: Bearer <token>`.",
                           code="missing_token")
    svc = current_app.extensions["switchboard"]
    if api_keys.looks_like_key(token):
        return api_keys.claims_for(svc.settings, svc.db, token)
    claims: dict[str, Any] = svc.verifier.verify(token)
    return claims


def is_admin(claims: dict[str, Any]) -> bool:
    """Admin claims; never a personal API key's (a key carries no admin rights)."""
    if api_keys.is_key(claims):
        return False
    return (claims.get("app_metadata") or {}).get("role") == "admin"


def token_required(view: F) -> F:
    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        g.claims = bearer_claims()
        return view(*args, **kwargs)

    wrapper.auth_guard = "user"  # type: ignore[attr-defined]
    return wrapper  # type: ignore[return-value]


def admin_token_required(view: F) -> F:
    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        g.claims = bearer_claims()
        api_keys.refuse_key(g.claims, "be used for admin routes")
        if not is_admin(g.claims):
            raise Forbidden("Admins only.", code="admin_required")
        return view(*args, **kwargs)

    wrapper.auth_guard = "admin"  # type: ignore[attr-defined]
    return wrapper  # type: ignore[return-value]


def admin_page_required(view: F) -> F:
    """For admin pages and htmx fragments (session cookie). Anonymous: a redirect to the sign-in page (for an htmx
    request, 401 with HX-Redirect so the browser navigates instead of swapping the sign-in page into a fragment).
    Signed in but not an admin: 403."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not current_user.is_authenticated:
            # After sign-in the user comes back to the page asked for; a fragment POST is not a page, so /admin.
            here = request.full_path.rstrip("?") if request.method == "GET" else "/admin"
            target = login_url("auth.sign_in", next_url=here)
            if request.headers.get("HX-Request"):
                return Response("", status=401, headers={"HX-Redirect": target})
            return redirect(target)
        if not current_user.is_admin:
            raise Forbidden("Admins only.", code="admin_required")
        g.claims = current_user.claims
        return view(*args, **kwargs)

    wrapper.auth_guard = "admin_page"  # type: ignore[attr-defined]
    return wrapper  # type: ignore[return-value]


def session_token_required(view: F) -> F:
    """Like token_required, but a personal API key is refused (403 `api_key_forbidden`): for key management and
    account changes, which a (possibly restricted) key must not reach."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        g.claims = bearer_claims()
        api_keys.refuse_key(g.claims)
        return view(*args, **kwargs)

    wrapper.auth_guard = "user"  # type: ignore[attr-defined]
    return wrapper  # type: ignore[return-value]
