"""Blueprints rendering pages and htmx fragments."""

from __future__ import annotations

from flask import Flask


def register_web(app: Flask) -> None:
    from webapp.web import admin, auth, pages, settings_page

    for bp in (auth.bp, pages.bp, settings_page.bp, admin.bp):
        app.register_blueprint(bp)

    @app.after_request
    def _vary(resp):  # type: ignore[no-untyped-def]
        if not resp.headers.get("Vary", "").count("HX-Request"):
            resp.vary.add("HX-Request")
        return resp
