"""Blueprints rendering pages and htmx fragments."""

from __future__ import annotations

from flask import Flask


def register_web(app: Flask) -> None:
    from webapp.web import auth, pages

    app.register_blueprint(auth.bp)
    app.register_blueprint(pages.bp)

    @app.after_request
    def _vary(resp):  # type: ignore[no-untyped-def]
        if not resp.headers.get("Vary", "").count("HX-Request"):
            resp.vary.add("HX-Request")
        return resp
