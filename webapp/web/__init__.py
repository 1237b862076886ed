"""Blueprints rendering pages and htmx fragments."""

from __future__ import annotations

from decimal import Decimal

from flask import Flask, request

# htmx works under a strict script policy: no inline scripts, no hx-on, no eval (htmx-config disables it).
# Inline style attributes stay allowed for htmx's swap transitions and the SVG charts.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
       "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; "
       "frame-ancestors 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=()",
    "Cross-Origin-Opener-Policy": "same-origin",
}
_SECURITY_HEADERS = tuple((name.lower(), name, value) for name, value in SECURITY_HEADERS.items())


def register_web(app: Flask) -> None:
    from webapp.web import account, admin, auth, pages, settings_page

    for bp in (auth.bp, pages.bp, settings_page.bp, admin.bp):
        app.register_blueprint(bp)
    app.register_blueprint(account.bp)
    from webapp.web import admin_teams, teams_page  # issue 12: the Teams pages and the admin panel's teams

    app.register_blueprint(teams_page.bp)
    app.register_blueprint(admin_teams.bp)
    from webapp.web import playground

    app.register_blueprint(playground.bp)
    from webapp.web import webhooks_page  # issue 16: webhook endpoints (settings, team, admin)

    app.register_blueprint(webhooks_page.bp)

    @app.template_filter("multiplier")
    def _multiplier(value: Decimal) -> str:
        return format(value.normalize(), "f")  # 10, not Decimal's "1E+1"

    @app.after_request
    def _headers(resp):  # type: ignore[no-untyped-def]
        # Every answer passes here: the names present are read once (each werkzeug lookup scans every header),
        # and the missing ones are appended.
        headers = resp.headers
        present = {name.lower() for name, _ in headers.items()}
        api = request.path.startswith(("/api/", "/v1/"))  # CORS answers differ by origin: Vary on it
        if "vary" not in present:
            headers.add("Vary", "HX-Request, Origin" if api else "HX-Request")
        else:
            if not headers.get("Vary", "").count("HX-Request"):
                resp.vary.add("HX-Request")
            if api:
                resp.vary.add("Origin")
        for lowered, name, value in _SECURITY_HEADERS:
            if lowered not in present:
                headers.add(name, value)
        if app.config["SESSION_COOKIE_SECURE"] and "strict-transport-security" not in present:
            headers.add("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
        return resp
