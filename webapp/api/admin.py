"""The admin JSON API (being built)."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("admin_api", __name__, url_prefix="/api/admin")
