"""Account security pages: change password (the settings page's Security section), forgot password, the local
backend's one-time reset link page, and the Supabase backend's recovery landing page.

Passwords are never echoed back into a page. A reset or recovery link that does not work gets one answer, "This
link is invalid or expired", whatever the reason; the token in it appears in no page, log line or error."""

from __future__ import annotations

import re
from typing import Any

from flask import Blueprint, Response, current_app, make_response, redirect, render_template, request, session, url_for
from flask_login import current_user, logout_user
from jinja2_fragments.flask import render_block

from webapp.auth.backends import AuthSession
from webapp.auth.session import SESSION_KEY
from webapp.errors import AppError, RateLimited, ValidationError
from webapp.repos import sign_in_attempts
from webapp.repos import users as users_repo
from webapp.services import account_security
from webapp.web import settings_page
from webapp.web.auth import SIGN_IN_NOTICE

bp = Blueprint("account", __name__)

CHANGED = "Password changed. Every other session of your account is signed out; this one stays signed in."
RESET_DONE = "Your password is changed and every session of the account is signed out. Sign in with the new password."
RECOVER_SENT = ("If an account uses this address, a link to choose a new password is on its way to it. The link "
                "works once; if it does not arrive, check the spam folder or ask again in a minute.")
RECOVER_WAIT = "A reset email was asked for a moment ago. Wait a minute, check your inbox, and try again."
RECOVER_LIMIT = 5  # recovery emails asked for per client address per window
RECOVER_WINDOW = 15 * 60
_TOKEN_HASH = re.compile(r"[A-Za-z0-9_-]{16,128}")


def _svc() -> Any:
    return current_app.extensions["switchboard"]


def _local() -> bool:
    return _svc().settings.auth_backend != "supabase"


def _address() -> str | None:
    return request.remote_addr  # ProxyFix has put the client's address here


def _confirmed(errors: dict[str, str]) -> None:
    """The new password typed twice the same, or an error beside the second field."""
    if request.form.get("password", "") != request.form.get("password_confirm", ""):
        errors.setdefault("password_confirm", "The two new passwords differ.")


# -- change password (settings page, Security section) -----------------------------------------------------------

def _security(state: settings_page.FormState, status: int) -> Response:
    """The Security block for htmx, plus an out-of-band update of the must-change notice; else the whole page."""
    if not request.headers.get("HX-Request"):
        return settings_page._render("security", state, status)
    html = render_block(settings_page.TEMPLATE, "security", state=state, email=current_user.email)
    html += render_block(settings_page.TEMPLATE, "password_notice", oob=True,
                         must_change_password=lambda: account_security.must_change_password(
                             _svc().db, current_user.get_id()))
    return make_response(html, status)


@bp.post("/settings/password")
def change_password() -> Response:
    if not current_user.is_authenticated:
        return settings_page._signed_in()  # type: ignore[no-any-return]  # the sign-in redirect
    svc, user_id = _svc(), current_user.get_id()
    current, new = request.form.get("current_password", ""), request.form.get("password", "")
    errors: dict[str, str] = {}
    _confirmed(errors)
    data = session.get(SESSION_KEY)
    try:
        if errors:
            raise ValidationError(errors)
        if not _local():  # the local backend throttles inside change_password_local, in the same way
            account_security.check_change_throttle(svc.db, user_id)
        try:
            kept = svc.auth_backend.change_password(AuthSession.from_dict(data), current, new)
        except ValidationError as exc:
            if not _local() and exc.errors.get("current_password") == account_security.WRONG_CURRENT:
                account_security.record_wrong_current(svc.db, user_id)
            raise
        if not _local():
            with svc.db.as_service() as conn:
                users_repo.clear_password_change(conn, user_id)
    except ValidationError as exc:
        return _security(settings_page.FormState("security", exc.errors), 422)
    except AppError as exc:
        resp = _security(settings_page.FormState("security", {"form": exc.message}), exc.status)
        if isinstance(exc, RateLimited):
            resp.headers.update(exc.headers)
        if exc.status == 401:  # the account or this session is gone
            logout_user()
            session.clear()
        return resp
    session[SESSION_KEY] = kept.to_dict()
    return _security(settings_page.FormState("security", message=CHANGED), 200)


# -- forgot password ------------------------------------------------------------------------------------------------

@bp.route("/auth/forgot-password", methods=["GET", "POST"])
def forgot_password() -> Any:
    """Local backend: there is no email yet, so the page says how to get a reset link from an admin. Supabase:
    GoTrue sends its recovery email; the page answers the same whether or not the email has an account."""
    if _local() or request.method == "GET":
        return render_template("auth/forgot_password.html", local=_local(), email="", errors={})
    svc, email = _svc(), request.form.get("email", "").strip()
    keys = ["recover-address:" + (_address() or "unknown")]
    try:
        with svc.db.as_service() as conn:
            wait = sign_in_attempts.wait_seconds(conn, keys, [RECOVER_LIMIT], RECOVER_WINDOW)
        if wait > 0:
            raise RateLimited("Too many requests from this address. Wait a while and try again.",
                              code="recover_throttled", headers={"Retry-After": str(wait)})
        with svc.db.as_service() as conn:  # every request counts: each one may send an email
            sign_in_attempts.record_failure(conn, keys, RECOVER_WINDOW)
        svc.auth_backend.request_password_reset(email, url_for("account.recover", _external=True))
    except ValidationError as exc:
        return render_template("auth/forgot_password.html", local=False, email=email, errors=exc.errors), 422
    except AppError as exc:
        if exc.status == 401:  # GoTrue refused the address itself: say no more than for any other address
            return render_template("auth/forgot_password.html", local=False, email="", errors={},
                                   notice=RECOVER_SENT)
        headers = exc.headers if isinstance(exc, RateLimited) else {}
        message = RECOVER_WAIT if exc.status == 429 else exc.message
        return render_template("auth/forgot_password.html", local=False, email=email,
                               errors={"form": message}), exc.status, headers
    return render_template("auth/forgot_password.html", local=False, email="", errors={}, notice=RECOVER_SENT)


# -- local backend: the one-time reset link -----------------------------------------------------------------------

def _reset_page(status: int = 200, **ctx: Any) -> Any:
    ctx.setdefault("errors", {})
    ctx.setdefault("local", _local())
    return render_template("auth/reset_password.html", **ctx), status


def _invalid(exc: AppError) -> Any:
    """The page for a link that cannot be used: throttled (429, with its wait), or the one invalid message."""
    limited = isinstance(exc, RateLimited)
    html, _ = _reset_page(invalid=exc.message if limited else account_security.INVALID_LINK)
    return html, exc.status if limited else 400, exc.headers if limited else {}


@bp.route("/reset-password", methods=["GET", "POST"])
def reset_password() -> Any:
    """/reset-password?token=...: set a new password with a link an admin (or `flask users reset-password`)
    made. The token rides in the query string, which the access log leaves out."""
    svc = _svc()
    token = request.args.get("token", "")
    if not _local():
        return _invalid(account_security.InvalidResetLink())
    try:
        email = account_security.reset_link_email(svc.db, svc.settings, token, _address())
        if request.method == "GET":
            return _reset_page(email=email)
        errors: dict[str, str] = {}
        _confirmed(errors)
        if errors:
            raise ValidationError(errors)
        email = account_security.reset_password(svc.db, svc.settings, token, request.form.get("password", ""),
                                                _address())
    except ValidationError as exc:
        return _reset_page(422, email=email, errors=exc.errors)
    except AppError as exc:
        return _invalid(exc)
    return _signed_out_notice(email)


def _signed_out_notice(email: str) -> Any:
    """On to the sign-in page, which shows the "password changed" notice once. Any session this browser had is
    over too."""
    if current_user.is_authenticated:
        logout_user()
    session.clear()
    session[SIGN_IN_NOTICE] = {"notice": RESET_DONE, "email": email}
    return redirect(url_for("auth.sign_in"))


# -- Supabase backend: GoTrue's recovery email lands here --------------------------------------------------------

@bp.route("/auth/recover", methods=["GET", "POST"])
def recover() -> Any:
    """The recovery email's link: /auth/recover?token_hash=...&type=recovery (the Reset Password email template
    of the Supabase project, see docs/admin-guide.md). GET only shows the form, so a mail scanner that opens the
    link does not use it up; POST verifies the token_hash (verifyOtp, type recovery) and sets the password."""
    svc = _svc()
    token_hash = request.args.get("token_hash", "")
    if _local() or request.args.get("type", "recovery") != "recovery" or not _TOKEN_HASH.fullmatch(token_hash):
        return _invalid(account_security.InvalidResetLink())
    if request.method == "GET":
        return _reset_page(email="")
    keys = ["recover-link:" + (_address() or "unknown")]
    errors: dict[str, str] = {}
    _confirmed(errors)
    try:
        with svc.db.as_service() as conn:
            wait = sign_in_attempts.wait_seconds(conn, keys, [account_security.RESET_ADDRESS_LIMIT],
                                                 account_security.RESET_WINDOW)
        if wait > 0:
            raise RateLimited("Too many attempts. Wait a while and try again.", code="reset_throttled",
                              headers={"Retry-After": str(wait)})
        if errors:
            raise ValidationError(errors)
        email = svc.auth_backend.complete_recovery(token_hash, request.form.get("password", ""))
    except ValidationError as exc:
        return _reset_page(422, email="", errors=exc.errors)
    except AppError as exc:
        if exc.status in (400, 401, 403):
            with svc.db.as_service() as conn:
                sign_in_attempts.record_failure(conn, keys, account_security.RESET_WINDOW)
            return _invalid(account_security.InvalidResetLink())
        if isinstance(exc, RateLimited):
            return _invalid(exc)
        return _reset_page(exc.status, email="", errors={"form": exc.message})
    with svc.db.as_service() as conn:
        user = users_repo.by_email(conn, email) if email else None
        if user is not None:
            users_repo.clear_password_change(conn, user.id)
    return _signed_out_notice(email)
