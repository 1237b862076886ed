"""Authentication for the JSON and /v1 routes: a verified Supabase access token in `Authorization: Bearer`."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from flask import current_app, g, request

from webapp.errors import Forbidden, Unauthorized

F = TypeVar("F", bound=Callable[..., Any])


def bearer_claims() -> dict[str, Any]:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("Send a Supabase access token as `Authorization: Bearer <token>`.",
                           code="missing_token")
    claims: dict[str, Any] = current_app.extensions["switchboard"].verifier.verify(token.strip())
    return claims


def is_admin(claims: dict[str, Any]) -> bool:
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
        if not is_admin(g.claims):
            raise Forbidden("Admins only.", code="admin_required")
        return view(*args, **kwargs)

    wrapper.auth_guard = "admin"  # type: ignore[attr-defined]
    return wrapper  # type: ignore[return-value]
