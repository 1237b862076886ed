"""Flask-Login glue: the web session holds the backend's tokens; every request re-verifies the access token
with the same verifier the API uses, refreshing it shortly before it expires, and asks the database (one
statement) whether the user and the session are still live and whether the user is an admin now."""

from __future__ import annotations

import time
from typing import Any

from flask import current_app, session
from flask_login import UserMixin

from webapp.auth.backends import AuthSession
from webapp.db import principal_ids
from webapp.errors import AppError
from webapp.extensions import login_manager

REFRESH_MARGIN = 120
SESSION_KEY = "sb"


class WebUser(UserMixin):
    def __init__(self, claims: dict[str, Any], access_token: str, *, admin: bool = False) -> None:
        self.claims = claims
        self.access_token = access_token
        self._admin = admin  # from auth.users at the start of this request, never from the token

    def get_id(self) -> str:
        return str(self.claims["sub"])

    @property
    def email(self) -> str:
        return str(self.claims.get("email", ""))

    @property
    def is_admin(self) -> bool:
        return self._admin


def start_session(auth: AuthSession) -> None:
    session.clear()
    session.permanent = True
    session[SESSION_KEY] = auth.to_dict()
    session["signed_in_at"] = int(time.time())


def end_session() -> AuthSession | None:
    data = session.get(SESSION_KEY)
    session.clear()
    return AuthSession.from_dict(data) if data else None


@login_manager.user_loader
def load_user(user_id: str) -> WebUser | None:
    data = session.get(SESSION_KEY)
    svc = current_app.extensions["switchboard"]
    if not data or data.get("user_id") != user_id:
        return None
    if time.time() - session.get("signed_in_at", 0) > svc.settings.session_hours * 3600:
        session.clear()
        return None
    auth = AuthSession.from_dict(data)
    if auth.expires_at - time.time() < REFRESH_MARGIN:
        try:
            auth = svc.auth_backend.refresh(auth)
        except AppError:
            session.clear()
            return None
        session[SESSION_KEY] = auth.to_dict()
    try:
        claims = svc.verifier.verify(auth.access_token)
        status = principal_status(svc.db, claims)
    except AppError:
        session.clear()
        return None
    if not status.get("ok"):  # deleted, banned, or the session was ended (sign-out elsewhere, admin action)
        session.clear()
        return None
    return WebUser(claims, auth.access_token, admin=bool(status.get("admin")))


def principal_status(db: Any, claims: dict[str, Any]) -> dict[str, Any]:
    """public.principal_status for these claims: one statement, one round trip. A page request has no earlier
    round trip to ride on: Flask-Login must know who is signed in (and whether they are an admin) before the view
    runs, so pages pay this one; the JSON and /v1 routes do not (their check rides on their own first statement).
    """
    user_id, session_id = principal_ids(claims)
    with db.service_statement() as conn:
        row = conn.execute("select public.principal_status(%s::uuid, %s::uuid)", [user_id, session_id]).fetchone()
    status = row[0] if row else None
    return status if isinstance(status, dict) else {"ok": False}
