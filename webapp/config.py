"""One Settings object, read from the environment once and validated at start-up."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from email.utils import formataddr, parseaddr
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

ADMIN_KEY_ENV = {
    "openai": "OPENAI_API_KEY",
    "github": "GITHUB_MODELS_API_KEY",
    "anthropic": "ANTHROPIC_API_KEY",
    "google": "GOOGLE_API_KEY",
    "groq": "GROQ_API_KEY",
    "mistral": "MISTRAL_API_KEY",
    "lmstudio": "LMSTUDIO_API_KEY",
    "ollama": "OLLAMA_API_KEY",
}


class ConfigError(Exception):
    """A setting is missing or malformed; the message names the variable."""


def _bool(name: str, raw: str) -> bool:
    low = raw.strip().lower()
    if low in {"1", "true", "yes", "on"}:
        return True
    if low in {"0", "false", "no", "off", ""}:
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


def _float(name: str, raw: str, low: float = 0.0) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if value <= low:
        raise ConfigError(f"{name} must be greater than {low}")
    return value


def _int(name: str, raw: str, low: int = 0) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if value < low:
        raise ConfigError(f"{name} must be at least {low}")
    return value


def parse_encryption_keys(name: str, raw: str) -> dict[str, bytes]:
    """`kid:base64key[,kid:base64key...]`; the first is the active key, the rest decrypt only."""
    keys: dict[str, bytes] = {}
    for part in [p.strip() for p in raw.split(",") if p.strip()]:
        kid, sep, b64 = part.partition(":")
        if not sep or not kid or not kid.replace("-", "").replace("_", "").isalnum():
            raise ConfigError(f"{name} entries must look like kid:base64key")
        try:
            key = base64.urlsafe_b64decode(b64 + "=" * (-len(b64) % 4))
        except ValueError:
            raise ConfigError(f"{name}: key {kid!r} is not base64") from None
        if len(key) != 32:
            raise ConfigError(f"{name}: key {kid!r} must decode to 32 bytes (AES-256)")
        if kid in keys:
            raise ConfigError(f"{name}: key id {kid!r} appears twice")
        keys[kid] = key
    if not keys:
        raise ConfigError(f"{name} must hold at least one key")
    return keys


@dataclass(frozen=True)
class SmtpConfig:
    """Where email goes: SMTP_URL parsed. tls: "ssl" (smtps://), "starttls" (smtp://, the default) or "none"
    (smtp://...?starttls=false, loopback hosts only: the local sink)."""

    host: str
    port: int
    tls: str
    username: str = ""
    password: str = ""
    ca_file: str = ""  # SMTP_CA_FILE: trust this CA bundle (a private relay) instead of the system's

    def __repr__(self) -> str:  # never the password
        user = f"{self.username}:***@" if self.username else ""
        return f"SmtpConfig({self.tls}://{user}{self.host}:{self.port})"


_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def parse_smtp_url(name: str, raw: str) -> SmtpConfig:
    """`smtps://user:pass@host[:465]` (TLS from the first byte), `smtp://user:pass@host[:587]` (STARTTLS required),
    `smtp://127.0.0.1:2525?starttls=false` (no TLS, loopback only). User and password are percent-decoded."""
    try:
        url = urlsplit(raw)
        port = url.port
    except ValueError:
        raise ConfigError(f"{name} is not a valid URL") from None
    if url.scheme not in {"smtp", "smtps"} or not url.hostname:
        raise ConfigError(f"{name} must look like smtp://host:port or smtps://host:port")
    query = parse_qs(url.query)
    starttls = query.pop("starttls", ["true"])[-1].strip().lower()
    if query or starttls not in {"true", "false"} or (url.scheme == "smtps" and starttls == "false"):
        raise ConfigError(f"{name}: the only option is starttls=true|false (smtp:// only)")
    tls = "ssl" if url.scheme == "smtps" else "starttls" if starttls == "true" else "none"
    if tls == "none" and url.hostname not in _LOOPBACK:
        raise ConfigError(f"{name}: starttls=false is allowed only for a loopback host (a local sink)")
    return SmtpConfig(host=url.hostname, port=port or (465 if tls == "ssl" else 587 if tls == "starttls" else 25),
                      tls=tls, username=unquote(url.username or ""), password=unquote(url.password or ""))


def _smtp(url: str, ca_file: str) -> SmtpConfig | None:
    if not url:
        return None
    smtp = parse_smtp_url("SMTP_URL", url)
    if ca_file:
        if not os.path.isfile(ca_file):
            raise ConfigError("SMTP_CA_FILE must name a readable PEM file")
        smtp = replace(smtp, ca_file=ca_file)
    return smtp


def _mail_from(raw: str) -> str:
    name, address = parseaddr(raw)
    if "@" not in address or any(c in raw for c in "\r\n"):
        raise ConfigError("MAIL_FROM must be an address, e.g. Switchboard <noreply@example.com>")
    return formataddr((name, address))


def _public_url(raw: str) -> str:
    if not raw.startswith(("http://", "https://")):
        raise ConfigError("PUBLIC_URL must be an http(s) URL")
    return raw.rstrip("/")


@dataclass(frozen=True)
class Settings:
    env: str = "development"
    secret_key: str = ""
    database_url: str = ""
    database_admin_url: str = ""
    db_pool_min: int = 2
    db_pool_max: int = 20
    auth_backend: str = "local"
    supabase_url: str = "http://127.0.0.1:54321"
    supabase_anon_key: str = ""
    jwt_secret: str = ""
    jwt_algorithms: tuple[str, ...] = ("HS256",)
    jwks_url: str = ""
    jwt_leeway: int = 30
    access_token_ttl: int = 3600
    session_hours: int = 12
    encryption_keys: Mapping[str, bytes] = field(default_factory=dict)
    cors_origins: tuple[str, ...] = ()
    upstream_connect_timeout: float = 5.0
    upstream_read_timeout: float = 120.0
    byok_allow_private_urls: bool = False
    reserve_default_max_tokens: int = 4096
    admin_env_keys: Mapping[str, str] = field(default_factory=dict)
    multiplier_min: float = 0.01
    multiplier_max: float = 100.0
    tiktoken_cache_dir: str = ""
    log_level: str = "INFO"
    rate_limit_per_minute: int = 120
    max_concurrent_streams: int = 8
    stream_stale_seconds: int = 900
    engine_probe_seconds: float = 15.0  # how long a keyless local engine's health probe is trusted (/v1/models)
    max_body_bytes: int = 4 * 1024 * 1024
    max_messages: int = 1000
    max_tokens_ceiling: int = 262_144
    trusted_hosts: tuple[str, ...] = ()
    proxy_hops: int = 0
    api_key_secret: str = ""  # HMAC key of personal API keys; load_settings derives one from SECRET_KEY if unset
    # Webhooks (issue 16): loopback/private receivers only when allowed (tests, local development); retry delays
    # multiplied by webhook_retry_scale (tests shorten them); an endpoint failing this long is disabled.
    webhook_allow_private_urls: bool = False
    webhook_timeout: float = 10.0
    webhook_retry_scale: float = 1.0
    webhook_disable_after_seconds: int = 86400
    # Email and the notification worker (issue 16). smtp: None = email off (nothing leaves the machine).
    smtp: SmtpConfig | None = None
    mail_from: str = "Switchboard <switchboard@localhost>"
    mail_sink_dir: str = ""  # set by `make run` when its local SMTP sink is in use (dev mail page)
    public_url: str = "http://127.0.0.1:8000"
    worker_concurrency: int = 4
    worker_heartbeat_seconds: float = 10.0
    worker_stalled_seconds: float = 30.0
    # Request-log retention in whole months before the current one (0: keep everything); `flask logs prune`.
    log_retention_months: int = 0
    # Days finished notification events, webhook deliveries and queue jobs are kept (0: keep everything);
    # `flask notify prune` and the worker's hourly notify.prune.
    notify_retention_days: int = 30
    # The local Supabase Auth API's request limits per client address (0: no limit), as Supabase Auth's defaults:
    # sign-ups 30 per 5 minutes, token refreshes 150 per 5 minutes.
    auth_signup_rate_limit: int = 30
    auth_signup_rate_window_seconds: int = 300
    auth_refresh_rate_limit: int = 150
    auth_refresh_rate_window_seconds: int = 300

    @property
    def jwt_issuer(self) -> str:
        return self.supabase_url.rstrip("/") + "/auth/v1"

    @property
    def active_key_id(self) -> str:
        return next(iter(self.encryption_keys))

    @property
    def secure_cookies(self) -> bool:
        return self.env == "production"

    def with_overrides(self, **overrides: Any) -> Settings:
        return replace(self, **overrides)

    def __repr__(self) -> str:  # never print secrets
        shown = {f.name: getattr(self, f.name) for f in fields(self)}
        for secret in ("secret_key", "jwt_secret", "encryption_keys", "admin_env_keys", "supabase_anon_key",
                       "api_key_secret"):
            shown[secret] = "***"
        for url in ("database_url", "database_admin_url"):
            shown[url] = "***" if shown[url] else ""
        shown["smtp"] = repr(self.smtp) if self.smtp else None
        return f"Settings({shown})"


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read and validate every setting; raise ConfigError naming the first bad variable."""
    env = os.environ if environ is None else environ

    def get(name: str, default: str = "") -> str:
        return env.get(name, default).strip()

    def required(name: str) -> str:
        value = get(name)
        if not value:
            raise ConfigError(f"{name} is required but not set")
        return value

    mode = get("SWITCHBOARD_ENV", "development")
    if mode not in {"development", "production", "test"}:
        raise ConfigError(f"SWITCHBOARD_ENV must be development, production or test, got {mode!r}")
    secret_key = required("SECRET_KEY")
    if len(secret_key) < 32:
        raise ConfigError("SECRET_KEY must be at least 32 characters")
    database_url = required("DATABASE_URL")
    if not database_url.startswith(("postgresql://", "postgres://")):
        raise ConfigError("DATABASE_URL must be a postgresql:// URL")
    backend = get("AUTH_BACKEND", "local")
    if backend not in {"local", "supabase"}:
        raise ConfigError(f"AUTH_BACKEND must be local or supabase, got {backend!r}")
    supabase_url = get("SUPABASE_URL", "http://127.0.0.1:54321").rstrip("/")
    if not supabase_url.startswith(("http://", "https://")):
        raise ConfigError("SUPABASE_URL must be an http(s) URL")
    algs = tuple(a.strip() for a in get("JWT_ALGORITHMS", "HS256").split(",") if a.strip())
    for alg in algs:
        if alg not in {"HS256", "ES256", "RS256"}:
            raise ConfigError(f"JWT_ALGORITHMS: {alg!r} is not one of HS256, ES256, RS256")
    jwt_secret = get("SUPABASE_JWT_SECRET")
    if "HS256" in algs and len(jwt_secret) < 32:
        raise ConfigError("SUPABASE_JWT_SECRET must be set (at least 32 characters) when HS256 is allowed")
    if backend == "local" and "HS256" not in algs:
        raise ConfigError("JWT_ALGORITHMS must include HS256 with AUTH_BACKEND=local (local tokens are HS256)")
    anon_key = get("SUPABASE_ANON_KEY")
    if backend == "supabase" and not anon_key:
        raise ConfigError("SUPABASE_ANON_KEY is required with AUTH_BACKEND=supabase")
    origins = tuple(o.strip().rstrip("/") for o in get("CORS_ORIGINS").split(",") if o.strip())
    for origin in origins:
        if origin == "*" or not origin.startswith(("http://", "https://")):
            raise ConfigError(f"CORS_ORIGINS: {origin!r} must be an explicit http(s) origin (no wildcard)")
    admin_env_keys = {slug: env[var].strip() for slug, var in ADMIN_KEY_ENV.items() if env.get(var, "").strip()}
    mult_min = _float("MULTIPLIER_MIN", get("MULTIPLIER_MIN", "0.01"))
    mult_max = _float("MULTIPLIER_MAX", get("MULTIPLIER_MAX", "100"))
    if mult_max < mult_min:
        raise ConfigError("MULTIPLIER_MAX must not be below MULTIPLIER_MIN")
    level = get("LOG_LEVEL", "INFO").upper()
    if level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        raise ConfigError(f"LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR, got {level!r}")
    api_key_secret = get("API_KEY_SECRET")
    if api_key_secret and len(api_key_secret) < 32:
        raise ConfigError("API_KEY_SECRET must be at least 32 characters")
    pool_min = _int("DB_POOL_MIN", get("DB_POOL_MIN", "2"), 1)
    pool_max = _int("DB_POOL_MAX", get("DB_POOL_MAX", "20"), 1)
    if pool_max < pool_min:
        raise ConfigError("DB_POOL_MAX must not be below DB_POOL_MIN")
    return Settings(
        env=mode,
        secret_key=secret_key,
        database_url=database_url,
        database_admin_url=get("DATABASE_ADMIN_URL") or database_url,
        db_pool_min=pool_min,
        db_pool_max=pool_max,
        auth_backend=backend,
        supabase_url=supabase_url,
        supabase_anon_key=anon_key,
        jwt_secret=jwt_secret,
        jwt_algorithms=algs,
        jwks_url=get("SUPABASE_JWKS_URL") or supabase_url + "/auth/v1/.well-known/jwks.json",
        jwt_leeway=_int("JWT_LEEWAY_SECONDS", get("JWT_LEEWAY_SECONDS", "30")),
        access_token_ttl=_int("ACCESS_TOKEN_TTL_SECONDS", get("ACCESS_TOKEN_TTL_SECONDS", "3600"), 60),
        session_hours=_int("SESSION_HOURS", get("SESSION_HOURS", "12"), 1),
        encryption_keys=parse_encryption_keys("ENCRYPTION_KEYS", required("ENCRYPTION_KEYS")),
        cors_origins=origins,
        upstream_connect_timeout=_float("UPSTREAM_CONNECT_TIMEOUT", get("UPSTREAM_CONNECT_TIMEOUT", "5")),
        upstream_read_timeout=_float("UPSTREAM_READ_TIMEOUT", get("UPSTREAM_READ_TIMEOUT", "120")),
        byok_allow_private_urls=_bool("BYOK_ALLOW_PRIVATE_URLS", get("BYOK_ALLOW_PRIVATE_URLS", "false")),
        reserve_default_max_tokens=_int("RESERVE_DEFAULT_MAX_TOKENS", get("RESERVE_DEFAULT_MAX_TOKENS", "4096"), 1),
        admin_env_keys=admin_env_keys,
        multiplier_min=mult_min,
        multiplier_max=mult_max,
        tiktoken_cache_dir=get("TIKTOKEN_CACHE_DIR"),
        log_level=level,
        rate_limit_per_minute=_int("RATE_LIMIT_PER_MINUTE", get("RATE_LIMIT_PER_MINUTE", "120")),
        max_concurrent_streams=_int("MAX_CONCURRENT_STREAMS", get("MAX_CONCURRENT_STREAMS", "8")),
        stream_stale_seconds=_int("STREAM_STALE_SECONDS", get("STREAM_STALE_SECONDS", "900"), 60),
        engine_probe_seconds=_float("ENGINE_PROBE_SECONDS", get("ENGINE_PROBE_SECONDS", "15")),
        max_body_bytes=_int("MAX_BODY_BYTES", get("MAX_BODY_BYTES", str(4 * 1024 * 1024)), 1024),
        max_messages=_int("MAX_MESSAGES", get("MAX_MESSAGES", "1000"), 1),
        max_tokens_ceiling=_int("MAX_TOKENS_CEILING", get("MAX_TOKENS_CEILING", "262144"), 1),
        trusted_hosts=tuple(h.strip() for h in get("TRUSTED_HOSTS").split(",") if h.strip()),
        proxy_hops=_int("PROXY_HOPS", get("PROXY_HOPS", "0")),
        api_key_secret=api_key_secret or derive_api_key_secret(secret_key),
        webhook_allow_private_urls=_bool("WEBHOOK_ALLOW_PRIVATE_URLS", get("WEBHOOK_ALLOW_PRIVATE_URLS", "false")),
        webhook_timeout=_float("WEBHOOK_TIMEOUT_SECONDS", get("WEBHOOK_TIMEOUT_SECONDS", "10")),
        webhook_retry_scale=_float("WEBHOOK_RETRY_SCALE", get("WEBHOOK_RETRY_SCALE", "1")),
        webhook_disable_after_seconds=_int("WEBHOOK_DISABLE_AFTER_SECONDS",
                                           get("WEBHOOK_DISABLE_AFTER_SECONDS", "86400"), 1),
        smtp=_smtp(get("SMTP_URL"), get("SMTP_CA_FILE")),
        mail_from=_mail_from(get("MAIL_FROM", "Switchboard <switchboard@localhost>")),
        mail_sink_dir=get("MAIL_SINK_DIR"),
        public_url=_public_url(get("PUBLIC_URL", "http://127.0.0.1:8000")),
        worker_concurrency=_int("WORKER_CONCURRENCY", get("WORKER_CONCURRENCY", "4"), 1),
        worker_heartbeat_seconds=_float("WORKER_HEARTBEAT_SECONDS", get("WORKER_HEARTBEAT_SECONDS", "10")),
        worker_stalled_seconds=_float("WORKER_STALLED_SECONDS", get("WORKER_STALLED_SECONDS", "30")),
        log_retention_months=_int("LOG_RETENTION_MONTHS", get("LOG_RETENTION_MONTHS", "0")),
        notify_retention_days=_int("NOTIFY_RETENTION_DAYS", get("NOTIFY_RETENTION_DAYS", "30")),
        auth_signup_rate_limit=_int("AUTH_SIGNUP_RATE_LIMIT", get("AUTH_SIGNUP_RATE_LIMIT", "30")),
        auth_signup_rate_window_seconds=_int("AUTH_SIGNUP_RATE_WINDOW_SECONDS",
                                             get("AUTH_SIGNUP_RATE_WINDOW_SECONDS", "300"), 1),
        auth_refresh_rate_limit=_int("AUTH_REFRESH_RATE_LIMIT", get("AUTH_REFRESH_RATE_LIMIT", "150")),
        auth_refresh_rate_window_seconds=_int("AUTH_REFRESH_RATE_WINDOW_SECONDS",
                                              get("AUTH_REFRESH_RATE_WINDOW_SECONDS", "300"), 1),
    )


API_KEY_SECRET_LABEL = b"switchboard personal API key HMAC v1"


def derive_api_key_secret(secret_key: str) -> str:
    """The API-key HMAC secret when API_KEY_SECRET is unset: HMAC-SHA256(SECRET_KEY, a fixed label). Changing
    SECRET_KEY then invalidates every personal API key, so production sets API_KEY_SECRET."""
    return hmac.new(secret_key.encode(), API_KEY_SECRET_LABEL, hashlib.sha256).hexdigest()
