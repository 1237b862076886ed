"""The signed-in user's pages and the health endpoints."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, jsonify, redirect, url_for
from flask_login import current_user

bp = Blueprint("pages", __name__)


def _svc() -> Any:
    return current_app.extensions["switchboard"]


@bp.get("/")
def index() -> Any:
    if current_user.is_authenticated:
        return redirect(url_for("settings_page.index"))
    return redirect(url_for("auth.sign_in"))


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
