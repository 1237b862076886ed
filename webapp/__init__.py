"""Switchboard: choose how your LLM requests are served, then serve them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask

from webapp.config import Settings, load_settings


def create_app(config: Settings | Mapping[str, str] | None = None) -> Flask:
    """Build the app. `config` is a Settings, a mapping read like the environment, or None for os.environ."""
    settings = config if isinstance(config, Settings) else load_settings(config)
    app = Flask(__name__, template_folder="../templates", static_folder="../static")
    app.config.update(
        SECRET_KEY=settings.secret_key,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.secure_cookies,
        REMEMBER_COOKIE_HTTPONLY=True,
        REMEMBER_COOKIE_SAMESITE="Lax",
        REMEMBER_COOKIE_SECURE=settings.secure_cookies,
        PERMANENT_SESSION_LIFETIME=settings.session_hours * 3600,
        MAX_CONTENT_LENGTH=settings.max_body_bytes,
        WTF_CSRF_TIME_LIMIT=None,
        WTF_CSRF_SSL_STRICT=settings.secure_cookies,
        TESTING=settings.env == "test",
    )
    if settings.trusted_hosts:
        app.config["TRUSTED_HOSTS"] = list(settings.trusted_hosts)
    if settings.proxy_hops:
        # Only behind a known number of proxies: X-Forwarded-* from anyone else is ignored. No auth decision
        # reads the host either way (token issuer and audience come from configuration).
        from werkzeug.middleware.proxy_fix import ProxyFix

        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=settings.proxy_hops, x_proto=settings.proxy_hops, x_host=settings.proxy_hops)
    from webapp import cli, extensions
    from webapp.api import register_api
    from webapp.web import errorhandlers, register_web

    extensions.init_app(app, settings)
    register_web(app)
    register_api(app)
    if settings.auth_backend == "local":  # with a Supabase project, /auth/v1 is Supabase's own
        from webapp.auth import gotrue_api

        gotrue_api.init_app(app)
    if settings.env == "development" and settings.mail_sink_dir:  # issue 16: the local SMTP sink's messages
        from webapp.web import dev_mail

        app.register_blueprint(dev_mail.bp)
    errorhandlers.init_app(app)
    cli.init_app(app)
    return app


def services(app: Flask) -> Any:
    return app.extensions["switchboard"]
