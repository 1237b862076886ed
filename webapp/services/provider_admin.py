"""An admin's provider lifecycle beyond editing: create a provider, retire it (archive with history, delete without),
fetch its model list from the upstream, add models from that list, and bulk-edit model rates.

Like services/admin.py, every change runs in one transaction as the admin (RLS checks it too) and writes its audit
row in that transaction; the catalog_version trigger makes it effective on every worker's next request. Work on
other users' rows (cleaning their routing, leaving them a notice) steps up to service_role inside the same
transaction, after admin_tx confirmed the admin."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from webapp.config import Settings
from webapp.crypto import DecryptError, KeyRing, admin_aad
from webapp.db import Database
from webapp.errors import NotFound, UpstreamError, ValidationError
from webapp.providers import Target, UpstreamFailure, get_adapter
from webapp.repos import admin as admin_repo
from webapp.repos import providers as providers_repo
from webapp.repos.providers import Provider
from webapp.services.admin import (
    MAX_RATE,
    ProviderView,
    _int,
    _provider_state,
    _rate_state,
    _views,
    admin_tx,
    parse_bool,
    refuse_archived,
    validate_update,
)
from webapp.services.chat_request import MODEL_NAME
from webapp.services.provider_fields import parse_slug

FETCH_TIMEOUT = 10.0  # seconds, connect and read: the admin is waiting on the page
MAX_FETCHED_MODELS = 2000
REQUIRED_ON_CREATE = ("name", "api_style", "base_url")


# -- create -------------------------------------------------------------------------------------------------------

def validate_create(payload: Any, settings: Settings, *, form: bool = False) -> dict[str, Any]:
    """Every column of a new provider, validated; defaults for what was left out."""
    if not isinstance(payload, Mapping):
        raise ValidationError({"body": "Send a JSON object."})
    data = {k: v for k, v in payload.items() if k != "csrf_token"}
    errors: dict[str, str] = {}
    slug = None
    try:
        slug = parse_slug(data.pop("slug", None))
    except ValidationError as exc:
        errors.update(exc.errors)
    if "models" in data:
        errors["models"] = "Add models after creating the provider (fetch them, or add them one by one)."
        data.pop("models")
    if form:
        data.setdefault("enabled", "false")
    if data.get("default_model") in (None, ""):
        data.pop("default_model", None)  # chosen later: the first model added
    try:
        values, _ = validate_update(data, settings, form=form)
    except ValidationError as exc:
        errors.update(exc.errors)
        values = {}
    for name in REQUIRED_ON_CREATE:
        if name not in data and name not in errors:
            errors[name] = "Required."
    if errors:
        raise ValidationError(errors)
    defaults: dict[str, Any] = {"default_model": "", "enabled": True, "credit_multiplier": 1, "byok_allowed": True,
                                "custom_base_url_allowed": False, "sort_order": 500, "free_for_byok": False,
                                "extra_headers": [], "needs_key": True}
    return {**defaults, **values, "slug": slug}


def create_provider(db: Database, settings: Settings, claims: Mapping[str, Any], payload: Any, *,
                    form: bool = False) -> ProviderView:
    """A new provider preset (no models and no key yet). A slug in use, even by a retired provider, is refused:
    the request logs name providers by slug."""
    values = validate_create(payload, settings, form=form)
    with admin_tx(db, claims) as conn:
        if providers_repo.slug_taken(conn, values["slug"]):
            raise ValidationError({"slug": f"{values['slug']} is taken (by a current or a retired provider)."})
        created = providers_repo.insert_provider(conn, values)
        assert created is not None  # admin_tx confirmed the admin; RLS lets the insert through
        admin_repo.insert_audit(conn, str(claims["sub"]), "provider.create", f"provider:{created.slug}", None,
                                {"slug": created.slug, **_provider_state(created)})
        return _views(conn, settings, created.id)[0]


# -- retire -------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Retired:
    slug: str
    name: str
    archived: bool  # True: kept (it has history) and hidden; False: deleted
    users_notified: int


def _clean(ref: providers_repo.RoutingRef, slug: str) -> tuple[str | None, list[str], dict[str, Any], list[str]]:
    """The user's routing without the slug, and what was removed, in words."""
    removed: list[str] = []
    default = ref.default_provider
    if default == slug:
        default = None
        removed.append("your default provider was cleared")
    priorities = [s for s in ref.provider_priorities if s != slug]
    if len(priorities) != len(ref.provider_priorities):
        removed.append("it was removed from your provider order")
    overrides = {}
    for task, rule in ref.task_overrides.items():
        if isinstance(rule, Mapping) and rule.get("provider") == slug:
            removed.append(f"your task override {task} was removed")
        else:
            overrides[task] = rule
    return default, priorities, overrides, removed


def _notify_users(conn: Any, provider: Provider) -> int:
    """Service role: clean every user's routing that names the provider and tell each what changed."""
    notified = set()
    with admin_repo.service_role(conn):
        for ref in providers_repo.routing_refs(conn, provider.slug):
            default, priorities, overrides, removed = _clean(ref, provider.slug)
            providers_repo.set_routing(conn, ref.user_id, default, priorities, overrides)
            providers_repo.insert_notice(conn, ref.user_id, "provider.retired",
                                         f"Provider {provider.name} was retired by an admin; "
                                         + "; ".join(removed) + ".")
            notified.add(ref.user_id)
        for user_id in providers_repo.byok_key_owners(conn, provider.id):
            if user_id in notified:
                continue
            providers_repo.insert_notice(conn, user_id, "provider.retired",
                                         f"Provider {provider.name} was retired by an admin; your own key for it "
                                         "no longer serves requests.")
            notified.add(user_id)
    return len(notified)


def retire_provider(db: Database, settings: Settings, claims: Mapping[str, Any], provider_id: str) -> Retired:
    """A provider with history (any request log names it) is archived: disabled for good and hidden from users,
    /v1/models and routing, while logs, receipts and analytics keep its name. One without history is deleted
    (its keys and rates with it). Either way the users whose routing named it are cleaned up and told."""
    with admin_tx(db, claims) as conn:
        provider = admin_repo.get_provider(conn, provider_id, lock=True)
        if provider is None:
            raise NotFound("No such provider.", code="provider_not_found")
        refuse_archived(provider)
        before = {"slug": provider.slug, **_provider_state(provider),
                  "models": _rate_state(admin_repo.rates(conn, provider_id))}
        notified = _notify_users(conn, provider)
        archived = providers_repo.has_history(conn, provider.slug)
        if archived:
            providers_repo.archive_provider(conn, provider_id)
        else:
            providers_repo.delete_provider(conn, provider_id)
        admin_repo.insert_audit(conn, str(claims["sub"]), "provider.archive" if archived else "provider.delete",
                                f"provider:{provider.slug}", before,
                                {"archived": archived, "users_notified": notified})
        return Retired(provider.slug, provider.name, archived, notified)


# -- fetch models -------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Fetched:
    view: ProviderView
    models: list[str]  # ids the upstream listed, valid, sorted, at most MAX_FETCHED_MODELS
    offered: set[str]  # those already offered (any state)
    skipped: int  # ids refused (invalid) or beyond the cap


def _admin_secret(conn: Any, keyring: KeyRing, provider: Provider, settings: Settings) -> str | None:
    with admin_repo.service_role(conn):
        keys = [k for k in providers_repo.active_admin_keys(conn) if k.provider_id == provider.id]
    for key in keys:
        try:
            return keyring.decrypt(key.ciphertext, admin_aad(provider.id))
        except DecryptError:
            continue
    return settings.admin_env_keys.get(provider.slug)


def fetch_models(db: Database, settings: Settings, keyring: KeyRing, claims: Mapping[str, Any],
                 provider_id: str) -> Fetched:
    """The provider's own model list (OpenAI-style GET {base}/models, Anthropic GET {base}/models with x-api-key
    and anthropic-version), called with the admin key and the provider's extra headers, bounded in time, size and
    count. The operator's address may be private or loopback. Nothing is stored: the page offers a checklist."""
    with admin_tx(db, claims) as conn:
        provider = admin_repo.get_provider(conn, provider_id)
        if provider is None:
            raise NotFound("No such provider.", code="provider_not_found")
        refuse_archived(provider)
        secret = _admin_secret(conn, keyring, provider, settings)
    if secret is None and provider.needs_key:
        raise ValidationError({"fetch": f"{provider.name} needs a key: add one under Admin keys first."})
    target = Target(provider=provider.slug, api_style=provider.api_style, base_url=provider.base_url,
                    api_key=secret, allow_private=True, connect_timeout=FETCH_TIMEOUT, read_timeout=FETCH_TIMEOUT,
                    extra_headers=provider.header_pairs)
    try:
        ids = get_adapter(provider.api_style).list_models(target)
    except UpstreamFailure as exc:
        status = f" (HTTP {exc.status})" if exc.status else ""
        raise UpstreamError(f"{provider.name} did not list its models{status}: {exc.kind}.",
                            code="model_list_failed") from None
    valid = sorted({m for m in ids if MODEL_NAME.fullmatch(m)})
    models = valid[:MAX_FETCHED_MODELS]
    view = admin_view(db, settings, claims, provider_id)
    return Fetched(view, models, {r.model for r in view.rates}, len(ids) - len(models))


def admin_view(db: Database, settings: Settings, claims: Mapping[str, Any], provider_id: str) -> ProviderView:
    with admin_tx(db, claims) as conn:
        return _views(conn, settings, provider_id)[0]


# -- add models and bulk edits ------------------------------------------------------------------------------------

def _rate_fields(payload: Mapping[str, Any], errors: dict[str, str]) -> dict[str, int | None]:
    """Rates and limits for new models: input and output required, the rest defaulted."""
    out: dict[str, int | None] = {}
    for name, low, high, default in (("input_rate", 0, MAX_RATE, None), ("output_rate", 0, MAX_RATE, None),
                                     ("context_window", 1, 100_000_000, 8192),
                                     ("max_output_tokens", 1, 10_000_000, 4096)):
        raw = payload.get(name)
        value = default if raw in (None, "") else _int(raw, low, high)
        if value is None:
            errors[name] = f"A whole number from {low:,} to {high:,}."
        out[name] = value
    cached = payload.get("cached_input_rate")
    out["cached_input_rate"] = None if cached in (None, "") else _int(cached, 0, MAX_RATE)
    if cached not in (None, "") and out["cached_input_rate"] is None:
        errors["cached_input_rate"] = "A whole number, 0 or more (empty: the input rate)."
    return out


def _model_list(value: Any, errors: dict[str, str], field: str = "models") -> list[str]:
    items = value if isinstance(value, list) else [value] if isinstance(value, str) else None
    if items is None or not items or len(items) > MAX_FETCHED_MODELS:
        errors[field] = f"Choose 1 to {MAX_FETCHED_MODELS:,} models."
        return []
    out = []
    for item in items:
        if not isinstance(item, str) or not MODEL_NAME.fullmatch(item.strip()):
            errors[field] = "A model id: 1 to 200 printable ASCII characters, no spaces."
            return []
        out.append(item.strip())
    return list(dict.fromkeys(out))


def add_models(db: Database, settings: Settings, claims: Mapping[str, Any], provider_id: str,
               payload: Any) -> ProviderView:
    """Offer several models at once (the checked ones of a fetched list) at the same rates. Models already
    offered keep their rates. The first model of a provider without a default model becomes its default."""
    if not isinstance(payload, Mapping):
        raise ValidationError({"body": "Send a JSON object with models and rates."})
    errors: dict[str, str] = {}
    models = _model_list(payload.get("models"), errors)
    fields = _rate_fields(payload, errors)
    if errors:
        raise ValidationError(errors)
    with admin_tx(db, claims) as conn:
        provider = admin_repo.get_provider(conn, provider_id, lock=True)
        if provider is None:
            raise NotFound("No such provider.", code="provider_not_found")
        refuse_archived(provider)
        existing = {r.model for r in admin_repo.rates(conn, provider_id)}
        added = [m for m in models if m not in existing]
        for model in added:
            admin_repo.upsert_rate(conn, provider_id, model, fields["input_rate"] or 0, fields["output_rate"] or 0,
                                   fields["context_window"] or 8192, fields["max_output_tokens"] or 4096,
                                   fields["cached_input_rate"], True)
        if added and not provider.default_model:
            admin_repo.update_provider(conn, provider_id, {"default_model": added[0]})
        if added:
            admin_repo.insert_audit(conn, str(claims["sub"]), "provider.models_add", f"provider:{provider.slug}",
                                    None, {"models": added, **fields})
        return _views(conn, settings, provider_id)[0]


BULK_FIELDS = {"input_rate": (0, MAX_RATE), "output_rate": (0, MAX_RATE), "cached_input_rate": (0, MAX_RATE),
               "context_window": (1, 100_000_000), "max_output_tokens": (1, 10_000_000), "enabled": None,
               "cache_write_rate": (0, MAX_RATE)}


def bulk_edit(db: Database, settings: Settings, claims: Mapping[str, Any], provider_id: str,
              payload: Any) -> ProviderView:
    """Set one field of several models: {"rate_ids": [...], "field": "input_rate", "value": 150}. The cached
    input rate may be set empty (null: the input rate)."""
    if not isinstance(payload, Mapping):
        raise ValidationError({"body": "Send a JSON object with rate_ids, field and value."})
    errors: dict[str, str] = {}
    raw_ids = payload.get("rate_ids")
    ids = raw_ids if isinstance(raw_ids, list) else [raw_ids] if isinstance(raw_ids, str) else None
    if not ids or len(ids) > MAX_FETCHED_MODELS or not all(isinstance(i, str) and _is_uuid(i) for i in ids):
        errors["rate_ids"] = "Select at least one model."
    field = payload.get("field")
    value: Any = None
    if not isinstance(field, str) or field not in BULK_FIELDS:
        errors["field"] = f"One of: {', '.join(BULK_FIELDS)}."
    elif field == "enabled":
        value = parse_bool(payload.get("value"))
        if value is None:
            errors["value"] = "Must be true or false."
    elif field in ("cached_input_rate", "cache_write_rate") and payload.get("value") in (None, ""):
        value = None
    else:
        low, high = BULK_FIELDS[field]  # type: ignore[misc]
        value = _int(payload.get("value"), low, high)
        if value is None:
            errors["value"] = f"A whole number from {low:,} to {high:,}."
    if errors:
        raise ValidationError(errors)
    with admin_tx(db, claims) as conn:
        provider = admin_repo.get_provider(conn, provider_id, lock=True)
        if provider is None:
            raise NotFound("No such provider.", code="provider_not_found")
        refuse_archived(provider)
        old = {r.id: r for r in admin_repo.rates(conn, provider_id)}
        chosen = [i for i in dict.fromkeys(ids or []) if i in old]
        if not chosen:
            raise ValidationError({"rate_ids": "None of the selected models belongs to this provider."})
        providers_repo.set_models_field(conn, provider_id, chosen, str(field), value)
        admin_repo.insert_audit(conn, str(claims["sub"]), "provider.models_bulk", f"provider:{provider.slug}",
                                {old[i].model: getattr(old[i], str(field)) for i in chosen},
                                {old[i].model: value for i in chosen})
        return _views(conn, settings, provider_id)[0]


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return len(text) == 36

