"""Admin rules for what the member service offers: provider presets (enabled, multiplier, settings, model rates)
and the admin keys that serve them. The same functions back the /admin pages and the /api/admin routes.

Every change runs in one transaction opened as the admin (`db.as_user(claims)`), so the tables' RLS policies
check it too, and its audit row is written in that same transaction. No cache is touched here: the
catalog_version trigger moves on every write, and each worker reloads its catalog on its next request."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlsplit

import psycopg

from webapp.config import ADMIN_KEY_ENV, Settings
from webapp.crypto import KeyRing, admin_aad, last4
from webapp.db import Database
from webapp.errors import Conflict, Forbidden, NotFound, ValidationError
from webapp.providers import API_STYLES
from webapp.repos import admin as admin_repo
from webapp.repos import providers as providers_repo
from webapp.repos.providers import Provider
from webapp.services import keys as keys_service
from webapp.services.chat_request import MODEL_NAME  # one model-id rule with the chat path (ids reach headers)
from webapp.services.credits import format_credits
from webapp.services.provider_fields import parse_extra_headers, per_million
from webapp.services.router import is_local_url

URL_RE = re.compile(r"^[!-~]{1,500}$")  # printable ASCII: no spaces, controls or look-alike characters
INT_RE = re.compile(r"^[+-]?[0-9]{1,18}$")  # ASCII digits only (not fullwidth or other scripts); well inside bigint
MAX_RATE = 10**12  # micro-credits per 1K tokens: a million credits per 1K tokens is already absurd
CHECKBOXES = ("enabled", "byok_allowed", "custom_base_url_allowed", "free_for_byok", "needs_key", "responses_api")


@contextmanager
def admin_tx(db: Database, claims: Mapping[str, Any]) -> Iterator[psycopg.Connection]:
    """A transaction as the admin, refused unless the database agrees the verified claims are an admin's."""
    with db.as_user(claims) as conn:
        if not admin_repo.is_admin(conn):
            raise Forbidden("Admins only.", code="admin_required")
        yield conn


@dataclass(frozen=True)
class KeySource:
    """Where member-mode requests on a provider get their key, as the router decides it."""

    source: str  # "database", "environment", "local" (no key needed), "missing"
    last4: str | None
    env_var: str | None


@dataclass(frozen=True)
class ProviderView:
    provider: Provider
    rates: list[admin_repo.Rate]
    keys: list[admin_repo.AdminKeyInfo]
    env_last4: str | None
    env_requests: int

    @property
    def id(self) -> str:
        return self.provider.id

    @property
    def key_source(self) -> KeySource:
        served = next((k for k in self.keys if k.state == "active"), None)
        env_var = ADMIN_KEY_ENV.get(self.provider.slug)
        if served is not None:
            return KeySource("database", served.last4, env_var)
        if self.env_last4 is not None:
            return KeySource("environment", self.env_last4, env_var)
        if not self.provider.needs_key or is_local_url(self.provider.base_url):
            return KeySource("local", None, env_var)
        return KeySource("missing", None, env_var)


# -- reading ------------------------------------------------------------------------------------------------------

def _env_last4(settings: Settings, slug: str) -> str | None:
    secret = settings.admin_env_keys.get(slug)
    return None if secret is None else (last4(secret) or "····")


def _views(conn: psycopg.Connection, settings: Settings, provider_id: str | None = None) -> list[ProviderView]:
    if provider_id is None:
        providers = providers_repo.list_providers(conn)  # as the admin, RLS shows disabled presets too
    else:
        one = admin_repo.get_provider(conn, provider_id)
        if one is None:
            raise NotFound("No such provider.", code="provider_not_found")
        providers = [one]
    rates = admin_repo.rates(conn, provider_id)
    keys = admin_repo.admin_keys(conn, provider_id)
    env_requests = admin_repo.env_key_requests(conn)
    return [ProviderView(p, [r for r in rates if r.provider_id == p.id], [k for k in keys if k.provider_id == p.id],
                         _env_last4(settings, p.slug), env_requests.get(p.slug, 0)) for p in providers]


def providers(db: Database, settings: Settings, claims: Mapping[str, Any]) -> list[ProviderView]:
    """Every preset, enabled or not, with its rates, keys (masked) and key source."""
    with admin_tx(db, claims) as conn:
        return _views(conn, settings)


def provider(db: Database, settings: Settings, claims: Mapping[str, Any], provider_id: str) -> ProviderView:
    with admin_tx(db, claims) as conn:
        return _views(conn, settings, provider_id)[0]


# -- validation ---------------------------------------------------------------------------------------------------

def parse_bool(value: Any) -> bool | None:
    """JSON booleans, or the strings a form sends; None when it is neither."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in {"true", "on", "1", "yes"}:
        return True
    if isinstance(value, str) and value.strip().lower() in {"false", "off", "0", "no", ""}:
        return False
    return None


def parse_multiplier(value: Any, settings: Settings, field: str = "multiplier") -> Decimal:
    """A positive number within the configured bounds, at most 4 decimal places (the column's scale)."""
    bounds = f"between {settings.multiplier_min:g} and {settings.multiplier_max:g}"
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        raise ValidationError({field: f"Enter a number {bounds}."})
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        raise ValidationError({field: f"Enter a number {bounds}."}) from None
    if not number.is_finite() or number <= 0:
        raise ValidationError({field: f"Enter a positive number {bounds}."})
    if not Decimal(str(settings.multiplier_min)) <= number <= Decimal(str(settings.multiplier_max)):
        raise ValidationError({field: f"The multiplier must be {bounds}."})
    if number != number.quantize(Decimal("0.0001")):
        raise ValidationError({field: "Use at most 4 decimal places."})
    return number.quantize(Decimal("0.0001"))


def _int(value: Any, low: int, high: int) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        value = value.strip()
        if not INT_RE.fullmatch(value):
            return None
        value = int(value)
    return value if isinstance(value, int) and low <= value <= high else None


def parse_base_url(value: Any) -> str | None:
    """An http(s) URL with a host and a valid port, in printable ASCII, without credentials or a fragment; the
    scheme is lowercased (the column's check is `^https?://`). None when it is not one."""
    url = _text(value, 1, 500)
    if url is None or not URL_RE.fullmatch(url):
        return None
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 -- raises ValueError for a port out of range or not a number
    except ValueError:  # "http://[::1" and the like
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.username is not None \
            or parts.password is not None or "#" in url:
        return None
    return (parts.scheme + url[len(parts.scheme):]).rstrip("/")


def _text(value: Any, low: int, high: int) -> str | None:
    """Stripped text of low..high characters, with no control or format character (Postgres text cannot hold NUL;
    the others, bidi overrides included, have no place in a name or a URL)."""
    if not isinstance(value, str) or not low <= len(value.strip()) <= high \
            or any(ch < " " or "\x7f" <= ch < "\xa0" or unicodedata.category(ch) == "Cf" for ch in value.strip()):
        return None
    return value.strip()


# model, input rate, output rate, context window, max output tokens, cached-input rate (None: input), enabled,
# kind ("chat" or "embedding"), cache-write rate (None: input), whether the cache-write rate was given (absent from
# a JSON model: a changed model keeps its rate)
RateValues = tuple[str, int, int, int, int, int | None, bool, str, int | None, bool]
RATE_KINDS = ("chat", "embedding")


def validate_rate(payload: Any) -> RateValues:
    if not isinstance(payload, Mapping):
        raise ValidationError({"models": "Each model is an object with model, input_rate, output_rate."})
    errors = {}
    model = payload.get("model")
    model = model.strip() if isinstance(model, str) else ""
    if not MODEL_NAME.fullmatch(model):
        errors["model"] = "A model id: 1 to 200 printable ASCII characters, no spaces."
    in_rate = _int(payload.get("input_rate"), 0, MAX_RATE)
    out_rate = _int(payload.get("output_rate"), 0, MAX_RATE)
    # Absent (or an empty form field) means the default; 0 is a value, and out of range.
    window_value = payload.get("context_window")
    window = _int(8192 if window_value in (None, "") else window_value, 1, 100_000_000)
    if in_rate is None:
        errors["input_rate"] = "Micro-credits per 1,000 input tokens: a whole number, 0 or more."
    if out_rate is None:
        errors["output_rate"] = "Micro-credits per 1,000 output tokens: a whole number, 0 or more."
    if window is None:
        errors["context_window"] = "Tokens: a whole number from 1 to 100,000,000."
    # The most one answer may hold: the gateway never lets the model produce more (absent: 4096).
    max_out_value = payload.get("max_output_tokens")
    max_out = _int(4096 if max_out_value in (None, "") else max_out_value, 1, 10_000_000)
    if max_out is None:
        errors["max_output_tokens"] = "Tokens: a whole number from 1 to 10,000,000."
    # Absent or empty: cached input tokens cost the input rate.
    cached_value = payload.get("cached_input_rate")
    cached = None if cached_value in (None, "") else _int(cached_value, 0, MAX_RATE)
    if cached is None and cached_value not in (None, ""):
        errors["cached_input_rate"] = ("Micro-credits per 1,000 cached input tokens: a whole number, 0 or more "
                                       "(empty: the input rate).")
    # Tokens written to the provider's prompt cache: empty or null = the input rate; absent = unchanged.
    write_given = "cache_write_rate" in payload
    write_value = payload.get("cache_write_rate")
    cache_write = None if write_value in (None, "") else _int(write_value, 0, MAX_RATE)
    if cache_write is None and write_value not in (None, ""):
        errors["cache_write_rate"] = ("Micro-credits per 1,000 tokens written to the prompt cache: a whole number, "
                                      "0 or more (empty: the input rate).")
    enabled = parse_bool(payload.get("enabled", True))
    if enabled is None:
        errors["enabled"] = "Must be true or false."
    kind = payload.get("kind") or "chat"  # absent or empty: a chat model
    if kind not in RATE_KINDS:
        errors["kind"] = "chat (chat completions, /v1/responses) or embedding (/v1/embeddings)."
    if errors:
        raise ValidationError(errors)
    assert in_rate is not None and out_rate is not None and window is not None and max_out is not None
    return model, in_rate, out_rate, window, max_out, cached, bool(enabled), str(kind), cache_write, write_given


def validate_update(payload: Any, settings: Settings, *, form: bool = False
                    ) -> tuple[dict[str, Any], list[RateValues] | None]:
    """The provider columns to change and, when `models` is given, the complete new list of model rates.
    From a form, an absent checkbox means false."""
    if not isinstance(payload, Mapping):
        raise ValidationError({"body": "Send a JSON object."})
    data = dict(payload)
    data.pop("csrf_token", None)
    if form:
        for box in CHECKBOXES:
            if box != "enabled":
                data[box] = data.get(box, "false")
    errors: dict[str, str] = {}
    values: dict[str, Any] = {}
    for key in data:
        if key not in (*admin_repo.PROVIDER_EDITABLE, "models"):
            errors[key] = "Unknown or read-only field."
    if "name" in data and (name := _text(data["name"], 1, 80)) is None:
        errors["name"] = "1 to 80 characters."
    elif "name" in data:
        values["name"] = name
    if "api_style" in data:
        if data["api_style"] not in API_STYLES:
            errors["api_style"] = f"One of: {', '.join(API_STYLES)}."
        else:
            values["api_style"] = data["api_style"]
    if "base_url" in data:
        url = parse_base_url(data["base_url"])
        if url is None:
            errors["base_url"] = ("An http(s) URL with a host, without spaces or user:password, for example "
                                  "https://api.openai.com/v1.")
        else:
            values["base_url"] = url
    if "default_model" in data:
        model = data["default_model"].strip() if isinstance(data["default_model"], str) else ""
        if not MODEL_NAME.fullmatch(model):
            errors["default_model"] = "A model id: 1 to 200 printable ASCII characters, no spaces."
        else:
            values["default_model"] = model
    for box in CHECKBOXES:
        if box in data:
            flag = parse_bool(data[box])
            if flag is None:
                errors[box] = "Must be true or false."
            else:
                values[box] = flag
    if "credit_multiplier" in data:
        try:
            values["credit_multiplier"] = parse_multiplier(data["credit_multiplier"], settings, "credit_multiplier")
        except ValidationError as exc:
            errors.update(exc.errors)
    if "extra_headers" in data:
        try:
            values["extra_headers"] = parse_extra_headers(data["extra_headers"])
        except ValidationError as exc:
            errors.update(exc.errors)
    if "sort_order" in data:
        order = _int(data["sort_order"], 0, 100_000)
        if order is None:
            errors["sort_order"] = "A whole number from 0 to 100000."
        else:
            values["sort_order"] = order
    if values.get("responses_api") and values.get("api_style") == "anthropic":
        errors["responses_api"] = "Only a provider speaking the OpenAI wire format serves the Responses API."
    rates = None
    if "models" in data:
        rates = _validate_models(data["models"], errors)
    if errors:
        raise ValidationError(errors)
    return values, rates


def _validate_models(value: Any, errors: dict[str, str]) -> list[RateValues] | None:
    if not isinstance(value, list) or len(value) > 500:
        errors["models"] = ("A list (at most 500) of {model, input_rate, output_rate, context_window, "
                            "max_output_tokens}.")
        return None
    out = []
    for i, item in enumerate(value):
        try:
            out.append(validate_rate(item))
        except ValidationError as exc:
            first = next(iter(exc.errors))
            errors["models"] = f"Model {i + 1}: {exc.errors[first]}"
            return None
    if len({m for m, *_ in out}) != len(out):
        errors["models"] = "Each model may appear once."
        return None
    return out


# -- writing ------------------------------------------------------------------------------------------------------

def _provider_state(p: Provider) -> dict[str, Any]:
    return {c: (format(getattr(p, c).normalize(), "f") if c == "credit_multiplier" else getattr(p, c))
            for c in admin_repo.PROVIDER_EDITABLE}


def _rate_state(rates: list[admin_repo.Rate]) -> list[dict[str, Any]]:
    return [{"model": r.model, "input_rate": r.input_rate, "output_rate": r.output_rate,
             "cached_input_rate": r.cached_input_rate, "context_window": r.context_window,
             "max_output_tokens": r.max_output_tokens, "enabled": r.enabled, "kind": r.kind,
             "cache_write_rate": r.cache_write_rate} for r in rates]


def refuse_archived(p: Provider) -> None:
    """A retired provider keeps its row for the logs and receipts; nothing about it changes again."""
    if p.archived_at is not None:
        raise Conflict(f"{p.name} was retired; it can no longer be changed.", code="provider_archived")


def _change(db: Database, settings: Settings, claims: Mapping[str, Any], provider_id: str, values: dict[str, Any],
            rates: list[RateValues] | None, action: str) -> ProviderView:
    with admin_tx(db, claims) as conn:
        before = admin_repo.get_provider(conn, provider_id, lock=True)
        if before is None:
            raise NotFound("No such provider.", code="provider_not_found")
        refuse_archived(before)
        old_rates = admin_repo.rates(conn, provider_id)
        after = admin_repo.update_provider(conn, provider_id, values)
        if after is None:  # RLS let the read through but not the write: the claims are not an admin's
            raise Forbidden("Admins only.", code="admin_required")
        if rates is not None:
            admin_repo.delete_rates_except(conn, provider_id, [m for m, *_ in rates])
            for rate in rates:
                admin_repo.upsert_rate(conn, provider_id, *rate)
        old, new = _provider_state(before), _provider_state(after)
        changed = {k for k in old if old[k] != new[k]}
        diff_before = {k: old[k] for k in sorted(changed)}
        diff_after = {k: new[k] for k in sorted(changed)}
        if rates is not None:
            new_rates = _rate_state(admin_repo.rates(conn, provider_id))
            if new_rates != _rate_state(old_rates):
                diff_before["models"], diff_after["models"] = _rate_state(old_rates), new_rates
        if diff_after:
            admin_repo.insert_audit(conn, str(claims["sub"]), action, f"provider:{after.slug}", diff_before,
                                    diff_after)
        return _views(conn, settings, provider_id)[0]


def update_provider(db: Database, settings: Settings, claims: Mapping[str, Any], provider_id: str, payload: Any,
                    *, form: bool = False) -> ProviderView:
    """Change any editable field of a preset and, with `models`, replace its model rates."""
    values, rates = validate_update(payload, settings, form=form)
    return _change(db, settings, claims, provider_id, values, rates, "provider.update")


def set_enabled(db: Database, settings: Settings, claims: Mapping[str, Any], provider_id: str,
                value: Any) -> ProviderView:
    flag = parse_bool(value)
    if flag is None:
        raise ValidationError({"enabled": "Must be true or false."})
    action = "provider.enable" if flag else "provider.disable"
    return _change(db, settings, claims, provider_id, {"enabled": flag}, None, action)


def set_multiplier(db: Database, settings: Settings, claims: Mapping[str, Any], provider_id: str,
                   value: Any) -> ProviderView:
    multiplier = parse_multiplier(value, settings)
    return _change(db, settings, claims, provider_id, {"credit_multiplier": multiplier}, None, "provider.multiplier")


def put_rate(db: Database, settings: Settings, claims: Mapping[str, Any], provider_id: str,
             payload: Any) -> ProviderView:
    """Add a model to a preset, or change its rates when the model is already offered."""
    model, in_rate, out_rate, window, max_out, cached, enabled, kind, cache_write, write_given = validate_rate(payload)
    with admin_tx(db, claims) as conn:
        view = _views(conn, settings, provider_id)[0]
        refuse_archived(view.provider)
        old = next((r for r in view.rates if r.model == model), None)
        admin_repo.upsert_rate(conn, provider_id, model, in_rate, out_rate, window, max_out, cached, enabled, kind,
                               cache_write, write_given)
        after = {"model": model, "input_rate": in_rate, "output_rate": out_rate, "cached_input_rate": cached,
                 "context_window": window, "max_output_tokens": max_out, "enabled": enabled, "kind": kind,
                 "cache_write_rate": cache_write if write_given else (old.cache_write_rate if old else None)}
        admin_repo.insert_audit(conn, str(claims["sub"]), "provider.rate", f"provider:{view.provider.slug}",
                                _rate_state([old])[0] if old else None, after)
        return _views(conn, settings, provider_id)[0]


def delete_rate(db: Database, settings: Settings, claims: Mapping[str, Any], provider_id: str,
                rate_id: str) -> ProviderView:
    with admin_tx(db, claims) as conn:
        view = _views(conn, settings, provider_id)[0]
        refuse_archived(view.provider)
        old = next((r for r in view.rates if r.id == rate_id), None)
        if old is None or not admin_repo.delete_rate(conn, provider_id, rate_id):
            raise NotFound("This provider does not offer that model.", code="rate_not_found")
        admin_repo.insert_audit(conn, str(claims["sub"]), "provider.rate_delete", f"provider:{view.provider.slug}",
                                _rate_state([old])[0], None)
        return _views(conn, settings, provider_id)[0]


# -- admin keys ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class KeySaved:
    view: ProviderView
    key: admin_repo.AdminKeyInfo
    check: keys_service.KeyCheck
    superseded: list[str]


def add_key(db: Database, settings: Settings, keyring: KeyRing, claims: Mapping[str, Any], provider_id: str,
            payload: Any, *, run_test: bool = True) -> KeySaved:
    """Store a key encrypted (AES-256-GCM, bound to the provider). With `rotate`, the provider's other active
    keys stop serving but stay stored until revoked. A models-list call then tests the key; its outcome is
    reported, never a reason to refuse the save."""
    if not isinstance(payload, Mapping):
        raise ValidationError({"body": "Send a JSON object with api_key, and optional label and rotate."})
    errors = {}
    label = payload.get("label") or ""
    if not isinstance(label, str) or len(label.strip()) > 80 or "\x00" in label:
        errors["label"] = "At most 80 characters."
    rotate = parse_bool(payload.get("rotate", False))
    if rotate is None:
        errors["rotate"] = "Must be true or false."
    with admin_tx(db, claims) as conn:
        provider_row = admin_repo.get_provider(conn, provider_id)
        if provider_row is None:
            raise NotFound("No such provider.", code="provider_not_found")
        refuse_archived(provider_row)
        try:
            api_key, _ = keys_service.validate_key(provider_row, payload.get("api_key"), None, settings)
        except ValidationError as exc:
            errors.update(exc.errors)
        if errors:
            raise ValidationError(errors)
        ciphertext, kid = keyring.encrypt(api_key, admin_aad(provider_id))
        key_row_id = admin_repo.insert_admin_key(conn, provider_id, ciphertext, kid, last4(api_key),
                                                 str(label).strip(), str(claims["sub"]))
        superseded = admin_repo.supersede_keys(conn, provider_id, key_row_id) if rotate else []
        key = admin_repo.admin_key(conn, provider_id, key_row_id)
        assert key is not None
        admin_repo.insert_audit(conn, str(claims["sub"]), "key.rotate" if rotate else "key.add",
                                f"provider:{provider_row.slug}", {"active_keys": superseded} if rotate else None,
                                {"key": key_row_id, "last4": key.last4, "label": key.label,
                                 "encryption_key_id": kid, "superseded": superseded})
        view = _views(conn, settings, provider_id)[0]
    # After the commit: a slow or failing provider must never hold the transaction or undo the save.
    check = keys_service.test_key(provider_row, api_key, None, settings) if run_test else \
        keys_service.KeyCheck("skipped", "Not tested.")
    return KeySaved(view, key, check, superseded)


def revoke_key(db: Database, settings: Settings, claims: Mapping[str, Any], provider_id: str,
               key_row_id: str) -> ProviderView:
    """Never served again; the row stays so the request logs keep naming the key that served them."""
    with admin_tx(db, claims) as conn:
        key = admin_repo.admin_key(conn, provider_id, key_row_id)
        if key is None:
            raise NotFound("This provider has no such key.", code="key_not_found")
        if key.revoked_at is not None:
            raise Conflict("This key is already revoked.", code="key_already_revoked")
        admin_repo.revoke_key(conn, provider_id, key_row_id)
        view = _views(conn, settings, provider_id)[0]
        admin_repo.insert_audit(conn, str(claims["sub"]), "key.revoke", f"provider:{view.provider.slug}",
                                {"key": key_row_id, "last4": key.last4, "state": key.state},
                                {"key": key_row_id, "last4": key.last4, "state": "revoked"})
        return view


# -- JSON shapes --------------------------------------------------------------------------------------------------

def key_dict(k: admin_repo.AdminKeyInfo) -> dict[str, Any]:
    return {"id": k.id, "last4": k.last4, "label": k.label, "state": k.state, "active": k.active,
            "encryption_key_id": k.key_id, "created_at": k.created_at.isoformat(),
            "revoked_at": k.revoked_at.isoformat() if k.revoked_at else None, "requests": k.requests,
            "last_used_at": k.last_used_at.isoformat() if k.last_used_at else None}


def provider_dict(v: ProviderView, *, with_keys: bool = False) -> dict[str, Any]:
    p = v.provider
    out: dict[str, Any] = {
        "id": p.id, "slug": p.slug, "name": p.name, "api_style": p.api_style, "base_url": p.base_url,
        "default_model": p.default_model, "enabled": p.enabled,
        "credit_multiplier": format(p.credit_multiplier.normalize(), "f"), "byok_allowed": p.byok_allowed,
        "custom_base_url_allowed": p.custom_base_url_allowed, "sort_order": p.sort_order,
        "free_for_byok": p.free_for_byok, "needs_key": p.needs_key, "responses_api": p.responses_api,
        "extra_headers": [{"name": h[0], "value": h[1]} for h in p.header_pairs],
        "archived": p.archived_at is not None,
        "archived_at": p.archived_at.isoformat() if p.archived_at else None,
        "models": [{"id": r.id, "model": r.model, "input_rate": r.input_rate, "output_rate": r.output_rate,
                    "cached_input_rate": r.cached_input_rate,
                    "input_per_1k": format_credits(r.input_rate), "output_per_1k": format_credits(r.output_rate),
                    "input_per_million": per_million(r.input_rate), "output_per_million": per_million(r.output_rate),
                    "cached_input_per_million": per_million(r.cached_input_rate) or None,
                    "context_window": r.context_window, "max_output_tokens": r.max_output_tokens,
                    "enabled": r.enabled, "kind": r.kind, "cache_write_rate": r.cache_write_rate}
                   for r in v.rates],
    }
    if with_keys:
        src = v.key_source
        out["key_status"] = {"source": src.source, "last4": src.last4, "env_var": src.env_var,
                             "member_ready": src.source != "missing"}
        out["keys"] = [key_dict(k) for k in v.keys]
        out["environment_key"] = ({"source": "environment", "env_var": src.env_var, "last4": v.env_last4,
                                   "requests": v.env_requests} if v.env_last4 is not None else None)
    return out
