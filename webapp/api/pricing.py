"""Public pricing: enabled providers, their multipliers and model rates."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, jsonify

from webapp.services import pricing

bp = Blueprint("pricing", __name__, url_prefix="/api/pricing")


@bp.get("/providers")
def providers() -> Any:
    return jsonify({"providers": pricing.public_providers(current_app.extensions["switchboard"].db)})
