"""Blueprints returning JSON: user, pricing, and the OpenAI-compatible /v1. CSRF-exempt: they authenticate with
bearer tokens, never with the session cookie."""

from __future__ import annotations

from flask import Flask

from webapp.extensions import csrf


def register_api(app: Flask) -> None:
    from webapp.api import admin, openapi, pricing, user, v1

    for bp in (v1.bp, user.bp, pricing.bp, admin.bp, openapi.bp):
        csrf.exempt(bp)
        app.register_blueprint(bp)
