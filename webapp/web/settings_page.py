"""Pages and htmx fragments: settings_page (being built)."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("settings_page", __name__)
