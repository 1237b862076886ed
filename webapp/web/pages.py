"""The signed-in user's pages and the health endpoints."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, jsonify, redirect, render_template, url_for
from flask_login import current_user, login_required

from webapp.services import overview

bp = Blueprint("pages", __name__)


def _svc() -> Any:
    return current_app.extensions["switchboard"]


@bp.get("/")
def index() -> Any:
    if current_user.is_authenticated:
        return redirect(url_for("pages.settings"))
    return redirect(url_for("auth.sign_in"))


@bp.get("/settings")
@login_required
def settings() -> Any:
    data = overview.for_user(_svc().db, current_user.claims)
    return render_template("settings/index.html", o=data)


@bp.get("/healthz")
def healthz() -> Any:
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz() -> Any:
    try:
        with _svc().db.as_anon() as conn:
            conn.execute("select 1")
    except Exception:
        return jsonify({"status": "unavailable", "database": "down"}), 503
    return jsonify({"status": "ready", "database": "up"})
