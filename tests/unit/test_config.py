"""load_settings: a good environment, every required variable missing, malformed values, secret-free repr, and
create_app refusing to start on a bad environment. No database is needed: nothing here connects."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from webapp import create_app
from webapp.config import ConfigError, Settings, load_settings

KEY1 = base64.urlsafe_b64encode(b"\x01" * 32).decode()
KEY2 = base64.urlsafe_b64encode(b"\x02" * 32).decode()
SECRET_KEY = "s3cret-" + "k" * 40
JWT_SECRET = "jwt-secret-" + "j" * 40
DB_PASSWORD = "db-pass-word-123"
ANON_KEY = "anon-key-value-0123456789"
OPENAI_KEY = "sk-proj-" + "o" * 40


def good_env(**overrides: str) -> dict[str, str]:
    env = {
        "SWITCHBOARD_ENV": "test",
        "SECRET_KEY": SECRET_KEY,
        "DATABASE_URL": f"postgresql://authenticator:{DB_PASSWORD}@127.0.0.1:5999/app",
        "SUPABASE_JWT_SECRET": JWT_SECRET,
        "ENCRYPTION_KEYS": f"k1:{KEY1},k0:{KEY2}",
    }
    env.update(overrides)
    return env


def without(*names: str, **overrides: str) -> dict[str, str]:
    env = good_env(**overrides)
    for name in names:
        env.pop(name, None)
    return env


def config_error(env: dict[str, str]) -> str:
    with pytest.raises(ConfigError) as info:
        load_settings(env)
    return str(info.value)


# --- a good environment ---------------------------------------------------------------------------------------------


def test_good_environment_with_defaults() -> None:
    s = load_settings(good_env())
    assert isinstance(s, Settings)
    assert s.env == "test" and s.secret_key == SECRET_KEY
    assert s.database_url.startswith("postgresql://") and s.database_admin_url == s.database_url
    assert s.auth_backend == "local" and s.jwt_algorithms == ("HS256",) and s.jwt_secret == JWT_SECRET
    assert s.supabase_url == "http://127.0.0.1:54321"
    assert s.jwt_issuer == "http://127.0.0.1:54321/auth/v1"
    assert s.jwks_url == "http://127.0.0.1:54321/auth/v1/.well-known/jwks.json"
    assert s.encryption_keys == {"k1": b"\x01" * 32, "k0": b"\x02" * 32}
    assert s.active_key_id == "k1"  # the first key encrypts, the rest only decrypt
    assert s.cors_origins == ()
    assert s.upstream_connect_timeout == 5.0 and s.upstream_read_timeout == 120.0
    assert s.byok_allow_private_urls is False
    assert s.admin_env_keys == {}
    assert s.session_hours == 12 and s.access_token_ttl == 3600 and s.jwt_leeway == 30
    assert s.secure_cookies is False


def test_good_environment_with_everything_set() -> None:
    s = load_settings(good_env(
        SWITCHBOARD_ENV="production", DATABASE_ADMIN_URL="postgres://postgres:x@127.0.0.1:5999/app",
        AUTH_BACKEND="supabase", SUPABASE_URL="https://ref.supabase.co/", SUPABASE_ANON_KEY=ANON_KEY,
        JWT_ALGORITHMS="ES256, RS256", SUPABASE_JWT_SECRET="", CORS_ORIGINS="https://app.example/, http://localhost:3000",
        UPSTREAM_CONNECT_TIMEOUT="2.5", UPSTREAM_READ_TIMEOUT="30", BYOK_ALLOW_PRIVATE_URLS="yes",
        OPENAI_API_KEY=f"  {OPENAI_KEY} ", GROQ_API_KEY="", LOG_LEVEL="debug", SESSION_HOURS="2",
    ))
    assert s.env == "production" and s.secure_cookies is True
    assert s.database_admin_url.startswith("postgres://postgres:")
    assert s.auth_backend == "supabase" and s.supabase_anon_key == ANON_KEY
    assert s.supabase_url == "https://ref.supabase.co"  # trailing slash dropped
    assert s.jwt_issuer == "https://ref.supabase.co/auth/v1"
    assert s.jwt_algorithms == ("ES256", "RS256")
    assert s.cors_origins == ("https://app.example", "http://localhost:3000")
    assert s.upstream_connect_timeout == 2.5 and s.upstream_read_timeout == 30.0
    assert s.byok_allow_private_urls is True
    assert s.admin_env_keys == {"openai": OPENAI_KEY}  # stripped; empty values ignored
    assert s.log_level == "DEBUG" and s.session_hours == 2


@pytest.mark.parametrize(("raw", "expected"), [("1", True), ("true", True), ("ON", True), ("0", False),
                                               ("false", False), ("No", False), ("", False)])
def test_boolean_spellings(raw: str, expected: bool) -> None:
    assert load_settings(good_env(BYOK_ALLOW_PRIVATE_URLS=raw)).byok_allow_private_urls is expected


def test_es256_only_needs_no_jwt_secret_with_supabase_backend() -> None:
    s = load_settings(without("SUPABASE_JWT_SECRET", AUTH_BACKEND="supabase", SUPABASE_ANON_KEY=ANON_KEY,
                              JWT_ALGORITHMS="ES256"))
    assert s.jwt_secret == "" and s.jwt_algorithms == ("ES256",)


# --- missing variables ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["SECRET_KEY", "DATABASE_URL", "ENCRYPTION_KEYS", "SUPABASE_JWT_SECRET"])
@pytest.mark.parametrize("how", ["absent", "empty", "blank"])
def test_missing_required_variable_is_named(name: str, how: str) -> None:
    env = without(name) if how == "absent" else good_env(**{name: "" if how == "empty" else "   "})
    assert name in config_error(env)


def test_jwt_secret_required_whenever_hs256_is_allowed() -> None:
    env = without("SUPABASE_JWT_SECRET", AUTH_BACKEND="supabase", SUPABASE_ANON_KEY=ANON_KEY,
                  JWT_ALGORITHMS="ES256,HS256")
    assert "SUPABASE_JWT_SECRET" in config_error(env)


def test_empty_environment_names_the_first_missing_variable() -> None:
    assert "SECRET_KEY" in config_error({})


# --- malformed values -----------------------------------------------------------------------------------------------

MALFORMED: list[tuple[str, dict[str, str]]] = [
    ("SECRET_KEY", {"SECRET_KEY": "too-short-secret"}),
    ("DATABASE_URL", {"DATABASE_URL": "mysql://user:pw@host/db"}),
    ("DATABASE_URL", {"DATABASE_URL": "127.0.0.1:5432/app"}),
    ("ENCRYPTION_KEYS", {"ENCRYPTION_KEYS": "k1:" + base64.urlsafe_b64encode(b"x" * 16).decode()}),
    ("ENCRYPTION_KEYS", {"ENCRYPTION_KEYS": "k1:" + base64.urlsafe_b64encode(b"x" * 33).decode()}),
    ("ENCRYPTION_KEYS", {"ENCRYPTION_KEYS": "k1:a"}),  # not base64 at all
    ("ENCRYPTION_KEYS", {"ENCRYPTION_KEYS": "k1:%%%%"}),
    ("ENCRYPTION_KEYS", {"ENCRYPTION_KEYS": f"k1:{KEY1},k1:{KEY2}"}),  # duplicate kid
    ("ENCRYPTION_KEYS", {"ENCRYPTION_KEYS": KEY1}),  # no kid
    ("ENCRYPTION_KEYS", {"ENCRYPTION_KEYS": f"bad kid:{KEY1}"}),
    ("ENCRYPTION_KEYS", {"ENCRYPTION_KEYS": " , "}),
    ("JWT_ALGORITHMS", {"JWT_ALGORITHMS": "none"}),
    ("JWT_ALGORITHMS", {"JWT_ALGORITHMS": "HS512"}),
    ("JWT_ALGORITHMS", {"JWT_ALGORITHMS": "HS256,none"}),
    ("JWT_ALGORITHMS", {"JWT_ALGORITHMS": "hs256"}),
    ("JWT_ALGORITHMS", {"JWT_ALGORITHMS": "ES256"}),  # the local backend mints HS256 tokens
    ("CORS_ORIGINS", {"CORS_ORIGINS": "*"}),
    ("CORS_ORIGINS", {"CORS_ORIGINS": "https://app.example,*"}),
    ("CORS_ORIGINS", {"CORS_ORIGINS": "app.example"}),
    ("UPSTREAM_READ_TIMEOUT", {"UPSTREAM_READ_TIMEOUT": "abc"}),
    ("UPSTREAM_READ_TIMEOUT", {"UPSTREAM_READ_TIMEOUT": "0"}),
    ("UPSTREAM_READ_TIMEOUT", {"UPSTREAM_READ_TIMEOUT": "-5"}),
    ("UPSTREAM_CONNECT_TIMEOUT", {"UPSTREAM_CONNECT_TIMEOUT": "5s"}),
    ("BYOK_ALLOW_PRIVATE_URLS", {"BYOK_ALLOW_PRIVATE_URLS": "maybe"}),
    ("AUTH_BACKEND", {"AUTH_BACKEND": "ldap"}),
    ("SUPABASE_ANON_KEY", {"AUTH_BACKEND": "supabase"}),
    ("SUPABASE_ANON_KEY", {"AUTH_BACKEND": "supabase", "SUPABASE_ANON_KEY": "   "}),
    ("SUPABASE_URL", {"SUPABASE_URL": "ftp://ref.supabase.co"}),
    ("SWITCHBOARD_ENV", {"SWITCHBOARD_ENV": "staging"}),
    ("LOG_LEVEL", {"LOG_LEVEL": "TRACE"}),
    ("SESSION_HOURS", {"SESSION_HOURS": "0"}),
    ("ACCESS_TOKEN_TTL_SECONDS", {"ACCESS_TOKEN_TTL_SECONDS": "10"}),
    ("DB_POOL_MAX", {"DB_POOL_MIN": "5", "DB_POOL_MAX": "2"}),
    ("MULTIPLIER_MAX", {"MULTIPLIER_MIN": "2", "MULTIPLIER_MAX": "1"}),
]


@pytest.mark.parametrize(("name", "overrides"), MALFORMED, ids=[f"{n}={list(o.values())}" for n, o in MALFORMED])
def test_malformed_value_is_named(name: str, overrides: dict[str, str]) -> None:
    assert name in config_error(good_env(**overrides))


@pytest.mark.parametrize(("name", "value"), [
    ("SECRET_KEY", "short-but-secret"),
    ("SUPABASE_JWT_SECRET", "short-jwt-secret"),
    ("ENCRYPTION_KEYS", "k1:" + base64.urlsafe_b64encode(b"secret-key-bytes").decode()),
])
def test_errors_never_echo_secret_values(name: str, value: str) -> None:
    message = config_error(good_env(**{name: value}))
    assert name in message
    assert value not in message
    if ":" in value:  # kid:key - the kid may be named, the key material never
        assert value.partition(":")[2] not in message


# --- repr hides secrets ---------------------------------------------------------------------------------------------


def test_repr_hides_secrets() -> None:
    s = load_settings(good_env(AUTH_BACKEND="supabase", SUPABASE_ANON_KEY=ANON_KEY, JWT_ALGORITHMS="HS256,ES256",
                               OPENAI_API_KEY=OPENAI_KEY,
                               DATABASE_ADMIN_URL=f"postgresql://postgres:{DB_PASSWORD}-admin@127.0.0.1/app"))
    for text in (repr(s), str(s), f"{s}", f"{s!r}", repr([s])):
        for secret in (SECRET_KEY, JWT_SECRET, ANON_KEY, OPENAI_KEY, DB_PASSWORD, KEY1, KEY2):
            assert secret not in text
        assert repr(b"\x01" * 32) not in text and "\\x01" not in text
        assert "Settings(" in text and "'auth_backend': 'supabase'" in text  # still useful for debugging
        assert "'secret_key': '***'" in text and "'database_url': '***'" in text


def test_repr_of_overridden_settings_still_hides_secrets() -> None:
    s = load_settings(good_env()).with_overrides(session_hours=1)
    assert SECRET_KEY not in repr(s) and s.session_hours == 1


# --- create_app refuses a bad environment ---------------------------------------------------------------------------


def _forbid_database(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    opened: list[Any] = []
    monkeypatch.setattr("webapp.db.Database.open", lambda self: opened.append(self))
    return opened


@pytest.mark.parametrize(("name", "env"), [
    ("SECRET_KEY", without("SECRET_KEY")),
    ("ENCRYPTION_KEYS", good_env(ENCRYPTION_KEYS="k1:short")),
    ("CORS_ORIGINS", good_env(CORS_ORIGINS="*")),
    ("SUPABASE_ANON_KEY", good_env(AUTH_BACKEND="supabase")),
])
def test_create_app_with_bad_mapping_raises_before_serving(monkeypatch: pytest.MonkeyPatch, name: str,
                                                           env: dict[str, str]) -> None:
    opened = _forbid_database(monkeypatch)
    with pytest.raises(ConfigError, match=name):
        create_app(env)
    assert opened == []  # failed before touching the database


def test_create_app_reads_os_environ_and_refuses_it(monkeypatch: pytest.MonkeyPatch) -> None:
    opened = _forbid_database(monkeypatch)
    for key, value in good_env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("UPSTREAM_READ_TIMEOUT", "abc")
    with pytest.raises(ConfigError, match="UPSTREAM_READ_TIMEOUT"):
        create_app()
    assert opened == []
