"""The OpenAPI 3.1 document of the JSON and /v1 routes, and its docs page (being built)."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("openapi", __name__, url_prefix="/api")
