"""Wiring of the app's shared objects: the database pool, token verifier, key ring, CSRF, CORS, Flask-Login."""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass, field
from typing import Any

from flask import Flask
from flask_cors import CORS
from flask_login import LoginManager
from flask_wtf import CSRFProtect

from webapp.config import Settings
from webapp.crypto import KeyRing
from webapp.db import Database

csrf = CSRFProtect()
login_manager = LoginManager()

# Request headers a browser may send to /api and /v1: Switchboard's own, then what the official browser SDKs send on
# every call, read from their sources (package versions pinned in package.json) — not found by trial:
# - openai (node_modules/openai/client.mjs `buildHeaders`: Authorization from `authHeaders`, X-Stainless-Retry-Count,
#   X-Stainless-Timeout, OpenAI-Organization, OpenAI-Project, User-Agent; internal/detect-platform.mjs
#   `getPlatformHeaders`: X-Stainless-Lang, -Package-Version, -OS, -Arch, -Runtime, -Runtime-Version;
#   lib/ChatCompletionStream.mjs, ChatCompletionRunner.mjs and resources/chat/completions/completions.mjs `parse`:
#   X-Stainless-Helper-Method; the beta resources: OpenAI-Beta, X-Stainless-Poll-Helper,
#   X-Stainless-Custom-Poll-Interval).
# - @anthropic-ai/sdk (client.mjs `buildHeaders`: anthropic-version, anthropic-dangerous-direct-browser-access with
#   dangerouslyAllowBrowser, the same X-Stainless-* platform headers; `authHeaders`: X-Api-Key or Authorization;
#   internal/stainless-helper-header.mjs: x-stainless-helper; resources/beta: anthropic-beta).
# - Accept is CORS-safelisted; User-Agent is listed because the SDKs set it and a browser that honours it would
#   otherwise fail the preflight. tests/api/test_cors_sdk_headers.py re-reads the SDK sources and fails when a new
#   header appears there.
CORS_ALLOW_HEADERS = [
    "Authorization", "X-Api-Key", "Content-Type", "X-BYOK-API-Key", "X-BYOK-Provider", "X-BYOK-Base-URL",
    "X-Switchboard-Task", "X-Request-Id", "OpenAI-Organization", "OpenAI-Project", "X-Switchboard-Team",
]
OPENAI_SDK_HEADERS = [
    "X-Stainless-Lang", "X-Stainless-Package-Version", "X-Stainless-OS", "X-Stainless-Arch", "X-Stainless-Runtime",
    "X-Stainless-Runtime-Version", "X-Stainless-Retry-Count", "X-Stainless-Timeout", "X-Stainless-Helper-Method",
    "X-Stainless-Poll-Helper", "X-Stainless-Custom-Poll-Interval", "OpenAI-Beta", "User-Agent",
]
ANTHROPIC_SDK_HEADERS = [
    "anthropic-version", "anthropic-beta", "anthropic-dangerous-direct-browser-access", "X-Stainless-Helper",
]
# Every response header a browser client must be able to read: the receipt (every X-Switchboard-* header the app
# sends; tests/api/test_cors_sdk_headers.py greps webapp/ for them), the request id and Retry-After.
CORS_EXPOSE_HEADERS = [
    "X-Request-Id", "Retry-After", "X-Switchboard-Mode", "X-Switchboard-Provider", "X-Switchboard-Model",
    "X-Switchboard-Key-Source", "X-Switchboard-Credits", "X-Switchboard-Credits-Reserved",
    "X-Switchboard-Multiplier", "X-Switchboard-Usage", "X-Switchboard-Fallback", "X-Switchboard-Output-Limit",
    "X-Switchboard-Output-Limit-Reason", "X-Switchboard-Max-Tokens-Fit", "X-Switchboard-Task",
    "X-Switchboard-Team", "X-Switchboard-Token-Count",
]
# How long a browser may reuse a preflight answer (ten minutes: a changed list reaches browsers soon).
CORS_MAX_AGE = 600
# /auth/v1 (local backend): what supabase-js sends (@supabase/supabase-js cors.mjs: authorization, x-client-info,
# apikey, content-type; @supabase/auth-js fetch.js adds X-Supabase-Api-Version) and what it must read back (it
# picks the error format by the X-Supabase-Api-Version response header).
AUTH_CORS_ALLOW_HEADERS = ["Authorization", "Content-Type", "apikey", "X-Client-Info", "X-Supabase-Api-Version"]
AUTH_CORS_EXPOSE_HEADERS = ["X-Supabase-Api-Version", "Retry-After"]


@dataclass
class Services:
    settings: Settings
    db: Database
    keyring: KeyRing
    extra: dict[str, Any] = field(default_factory=dict)

    def __getattr__(self, name: str) -> Any:
        try:
            return self.__dict__["extra"][name]
        except KeyError:
            raise AttributeError(name) from None


def init_app(app: Flask, settings: Settings) -> Services:
    from webapp import logging_setup

    logging_setup.configure(settings.log_level)
    if settings.tiktoken_cache_dir:
        # tiktoken reads its cache location only from the environment; point it at the files setup installed.
        os.environ.setdefault("TIKTOKEN_CACHE_DIR", settings.tiktoken_cache_dir)
    db = Database(settings.database_url, settings.db_pool_min, settings.db_pool_max)
    db.open()
    atexit.register(db.close)
    svc = Services(settings=settings, db=db, keyring=KeyRing(settings.encryption_keys))
    from webapp.auth.backends import make_backend
    from webapp.auth.jwt import TokenVerifier

    svc.extra["verifier"] = TokenVerifier(settings)
    svc.extra["auth_backend"] = make_backend(settings, db)
    from webapp.services.catalog import CatalogCache
    from webapp.services.gateway import Gateway
    from webapp.services.logwriter import LogWriter

    svc.extra["catalog"] = CatalogCache(db)
    svc.extra["logs"] = LogWriter(db)
    # Registered after db.close, so it runs first at exit: queued receipts are written before the pool closes.
    atexit.register(svc.extra["logs"].flush, 10.0)
    svc.extra["gateway"] = Gateway(settings, db, svc.keyring, svc.extra["catalog"], svc.extra["logs"])
    app.extensions["switchboard"] = svc
    csrf.init_app(app)
    login_manager.init_app(app)
    login_manager.login_view = "auth.sign_in"
    login_manager.session_protection = "strong"
    # Bearer tokens, not cookies, authenticate cross-origin calls: credentials stay off, origins stay explicit.
    CORS(
        app,
        resources={r"/api/*": {}, r"/v1/*": {}, **_auth_cors(settings)},
        origins=list(settings.cors_origins),
        allow_headers=CORS_ALLOW_HEADERS + OPENAI_SDK_HEADERS + ANTHROPIC_SDK_HEADERS,
        expose_headers=CORS_EXPOSE_HEADERS,
        supports_credentials=False,
        max_age=CORS_MAX_AGE,
    )
    return svc


def _auth_cors(settings: Settings) -> dict[str, dict[str, Any]]:
    """CORS for the local backend's Supabase Auth API, so a browser supabase-js can sign in from an allowed origin."""
    if settings.auth_backend != "local":
        return {}
    return {r"/auth/v1/*": {"allow_headers": AUTH_CORS_ALLOW_HEADERS, "expose_headers": AUTH_CORS_EXPOSE_HEADERS,
                            "methods": ["GET", "POST", "PUT"]}}
