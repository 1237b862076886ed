"""Sign up, sign in, sign out."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote, urlsplit

from flask import Blueprint, current_app, redirect, render_template, request, session, url_for
from flask_login import current_user, login_required, login_user, logout_user
from werkzeug.exceptions import HTTPException
from werkzeug.routing import RequestRedirect

from webapp.auth.backends import SIGN_UP_NOTICE, validate_credentials
from webapp.auth.session import WebUser, end_session, start_session
from webapp.auth.throttle import SignInThrottle, request_limit
from webapp.errors import AppError, RateLimited, ValidationError
from webapp.services import account_security

bp = Blueprint("auth", __name__)
SIGN_IN_NOTICE = "sign_in_notice"  # session key: {"notice", "email"} for the next sign-in page, shown once

# What a path and query of this app may contain: RFC 3986 pchar, "/", "?" and percent-escapes. No whitespace,
# no control characters, no backslash (browsers read "\" as "/"), no "#".
_SAFE_TARGET = re.compile(r"[A-Za-z0-9\-._~!$&'()*+,;=:@/?%]*")
_MAX_TARGET = 2048


def _svc() -> Any:
    return current_app.extensions["switchboard"]


def _is_local_path(value: str) -> bool:
    if not value.startswith("/") or value.startswith("//") or not _SAFE_TARGET.fullmatch(value):
        return False
    parts = urlsplit(value)
    return not parts.scheme and not parts.netloc


def safe_next(target: str | None) -> str:
    """`target` when it is a page of this app, else /settings. Only the final value counts: every percent-decoding
    of it must also be a plain local path (so "/%2F%2Fevil.com" and "/%5Cevil.com" are refused), and its path must
    be a GET route of this app."""
    fallback: str = url_for("settings_page.index")
    if not target or len(target) > _MAX_TARGET or not _is_local_path(target):
        return fallback
    decoded = target
    for _ in range(3):  # double and triple encodings too; a fourth level would still fail the route match
        decoded = unquote(decoded)
        if not _is_local_path(decoded):
            return fallback
    try:
        current_app.url_map.bind("localhost").match(urlsplit(target).path, method="GET")
    except (HTTPException, RequestRedirect):
        return fallback
    return target


def _client_address() -> str | None:
    # ProxyFix (configured with the number of trusted proxies) has already put the client's address here.
    return request.remote_addr


def _form(template: str) -> Any:
    email = request.form.get("email", "").strip()
    password = request.form.get("password", "")
    svc = _svc()
    signing_in = template == "auth/sign_in.html"
    throttle = SignInThrottle(svc.db)
    try:
        if not signing_in:
            # Counted once the form is valid (a typo costs nothing), in the same count as /auth/v1/signup.
            validate_credentials(email, password, new=True)
            request_limit(svc.settings, "signup").hit(svc.db, _client_address())
            auth = svc.auth_backend.sign_up(email, password)
            if auth is None:
                notice = getattr(svc.auth_backend, "sign_up_notice", SIGN_UP_NOTICE)
                return render_template("auth/sign_in.html", email=email, errors={}, notice=notice)
        else:
            throttle.check(email, _client_address())
            try:
                auth = svc.auth_backend.sign_in(email, password)
            except ValidationError:
                raise
            except AppError as exc:
                if exc.status in (400, 401, 403):
                    throttle.failed(email, _client_address())
                raise
            throttle.succeeded(email)
        claims = svc.verifier.verify(auth.access_token)
    except ValidationError as exc:
        return render_template(template, email=email, errors=exc.errors), 422
    except AppError as exc:
        errors = {exc.field or "form": exc.message}
        headers = exc.headers if isinstance(exc, RateLimited) else {}
        return render_template(template, email=email, errors=errors), exc.status, headers
    start_session(auth)
    login_user(WebUser(claims, auth.access_token))
    if signing_in and account_security.must_change_password(svc.db, auth.user_id):
        # A one-time password (the first admin's): the settings page shows why and where to change it.
        return redirect(url_for("settings_page.index"))
    return redirect(safe_next(request.args.get("next")))


@bp.route("/auth/sign-in", methods=["GET", "POST"])
def sign_in() -> Any:
    if request.method == "POST":
        return _form("auth/sign_in.html")
    if current_user.is_authenticated:
        return redirect(url_for("settings_page.index"))
    shown = session.pop(SIGN_IN_NOTICE, None)  # set once by a page that sends the user here (a password reset)
    if isinstance(shown, dict):
        return render_template("auth/sign_in.html", email=str(shown.get("email", "")), errors={},
                               notice=str(shown.get("notice", "")))
    return render_template("auth/sign_in.html", email="", errors={})


@bp.route("/auth/sign-up", methods=["GET", "POST"])
def sign_up() -> Any:
    if request.method == "POST":
        return _form("auth/sign_up.html")
    return render_template("auth/sign_up.html", email="", errors={})


@bp.post("/auth/sign-out")
@login_required
def sign_out() -> Any:
    """End the session on the server too (auth.sessions), so a copy of the cookie or its tokens stops working."""
    auth = end_session()
    logout_user()
    if auth is not None:
        _svc().auth_backend.sign_out(auth)
    return redirect(url_for("auth.sign_in"))
