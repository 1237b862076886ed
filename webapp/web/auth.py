"""Sign up, sign in, sign out."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, redirect, render_template, request, url_for
from flask_login import current_user, login_required, login_user, logout_user

from webapp.auth.session import WebUser, end_session, start_session
from webapp.errors import AppError, ValidationError

bp = Blueprint("auth", __name__)


def _svc() -> Any:
    return current_app.extensions["switchboard"]


def _safe_next(target: str | None) -> str:
    # Only same-site relative paths: an open redirect after sign-in is a phishing aid.
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return url_for("settings_page.index")


def _form(template: str) -> Any:
    email = request.form.get("email", "").strip()
    password = request.form.get("password", "")
    svc = _svc()
    try:
        if template == "auth/sign_up.html":
            auth = svc.auth_backend.sign_up(email, password)
            if auth is None:
                return render_template("auth/sign_in.html", email=email, errors={},
                                       notice="Check your email to confirm your account, then sign in.")
        else:
            auth = svc.auth_backend.sign_in(email, password)
        claims = svc.verifier.verify(auth.access_token)
    except ValidationError as exc:
        return render_template(template, email=email, errors=exc.errors), 422
    except AppError as exc:
        errors = {exc.field or "form": exc.message}
        return render_template(template, email=email, errors=errors), exc.status
    start_session(auth)
    login_user(WebUser(claims, auth.access_token))
    return redirect(_safe_next(request.args.get("next")))


@bp.route("/auth/sign-in", methods=["GET", "POST"])
def sign_in() -> Any:
    if request.method == "POST":
        return _form("auth/sign_in.html")
    if current_user.is_authenticated:
        return redirect(url_for("settings_page.index"))
    return render_template("auth/sign_in.html", email="", errors={})


@bp.route("/auth/sign-up", methods=["GET", "POST"])
def sign_up() -> Any:
    if request.method == "POST":
        return _form("auth/sign_up.html")
    return render_template("auth/sign_up.html", email="", errors={})


@bp.post("/auth/sign-out")
@login_required
def sign_out() -> Any:
    auth = end_session()
    logout_user()
    if auth is not None:
        _svc().auth_backend.sign_out(auth)
    return redirect(url_for("auth.sign_in"))
