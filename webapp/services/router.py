"""Which upstream serves a request, in what order, paid how. Pure rules: no Flask, no database.

Order of sources: a BYOK key in the request headers, then the user's stored BYOK keys, then member presets with
admin keys (database keys before keys from the environment). Hard rules: BYOK never uses an admin key and never
spends credits; a user-supplied base URL is never sent an admin key; only the requesting user's own stored keys
are used (their ciphertext is bound to the user id); disabled providers are skipped."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from decimal import Decimal
from urllib.parse import urlsplit

from webapp.config import Settings
from webapp.crypto import DecryptError, KeyRing, admin_aad, byok_aad
from webapp.errors import AppError, Forbidden, NotFound
from webapp.providers.base import Target
from webapp.repos.context import UserContext
from webapp.repos.providers import ModelRate, Provider
from webapp.repos.teams import team_aad
from webapp.services.catalog import Catalog


@dataclass(frozen=True)
class ByokHeaders:
    api_key: str = field(repr=False)
    provider: str | None = None
    base_url: str | None = None


@dataclass(frozen=True)
class Route:
    provider: Provider
    model: str
    target: Target
    mode: str  # "member" or "byok"
    key_source: str  # admin_db, admin_env, byok_header, byok_stored, none
    rate: ModelRate | None = None
    admin_key_id: str | None = None
    user_key_id: str | None = None

    @property
    def multiplier(self) -> Decimal:
        return self.provider.credit_multiplier if self.mode == "member" else Decimal(0)


@dataclass(frozen=True)
class Plan:
    routes: list[Route]
    mode: str
    task: str | None
    requested_model: str


def split_model(model: str, catalog: Catalog) -> tuple[str | None, str]:
    """`provider/model` when the prefix is a known provider slug, else a bare model (GitHub's `openai/gpt-4o` is
    addressed as `github/openai/gpt-4o`)."""
    prefix, sep, rest = model.partition("/")
    if sep and rest and prefix in catalog.providers:
        return prefix, rest
    return None, model


def is_local_url(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return not ipaddress.ip_address(host).is_global
    except ValueError:
        return False


def keyless(provider: Provider) -> bool:
    """Whether the operator runs the provider without a key: marked so by the admin (a company vLLM), or on a
    local address (Ollama, LM Studio), as the admin panel's key source says."""
    return not provider.needs_key or is_local_url(provider.base_url)


def needs_key(provider: Provider, catalog: Catalog, settings: Settings) -> bool:
    """A provider needs a key unless the operator runs it keyless and has given it no admin key."""
    return not keyless(provider) or bool(catalog.admin_keys.get(provider.slug)) \
        or provider.slug in settings.admin_env_keys


def byok_free_here(provider: Provider, catalog: Catalog, settings: Settings) -> bool:
    """Whether a BYOK request may use the provider's own address. A keyless engine would serve any string as a
    "key" at the operator's expense, so only when an admin marked it free for BYOK."""
    return provider.free_for_byok or needs_key(provider, catalog, settings)


def _order(slugs: list[str], priorities: list[str], catalog: Catalog, first: str | None) -> list[str]:
    def rank(slug: str) -> tuple[int, int, int]:
        prio = priorities.index(slug) if slug in priorities else len(priorities)
        return (0 if slug == first else 1, prio, catalog.providers[slug].sort_order)

    return sorted(dict.fromkeys(slugs), key=rank)


def offered_rate(catalog: Catalog, slug: str, model: str) -> ModelRate | None:
    """The model's price on this provider when the admin offers it (a model switched off is not offered)."""
    rate = catalog.rates.get((slug, model))
    return rate if rate is not None and rate.enabled else None


def pin_usable(provider: Provider) -> bool:
    """A provider a pin may name: enabled and not retired."""
    return provider.enabled and provider.archived_at is None


def _candidates(model: str, ctx: UserContext, catalog: Catalog) -> list[tuple[str, str]]:
    """(provider slug, model) pairs able to serve a bare model, best first, disabled providers removed."""
    prefs = ctx.preferences
    offering = [s for s in catalog.providers_offering(model) if offered_rate(catalog, s, model) is not None]
    if offering:
        slugs = offering
    else:
        fallback = prefs.default_provider or (prefs.provider_priorities[0] if prefs.provider_priorities else None)
        slugs = [fallback] if fallback in catalog.providers else []
    ordered = _order(slugs, list(prefs.provider_priorities), catalog, prefs.default_provider)
    return [(s, model) for s in ordered if pin_usable(catalog.providers[s])]


class PinError(AppError):
    """A pinned request (`provider/model`) its provider cannot serve: never handed to another provider."""

    def __init__(self, provider: Provider, step: str, message: str, *, code: str, status: int,
                 field: str | None = "model") -> None:
        super().__init__(message, code=code, status=status, field=field,
                         headers={"X-Switchboard-Fallback": f"{provider.slug}:{step}",
                                  "X-Switchboard-Provider": provider.slug})


def _pinned(slug: str, model: str, requested: str, catalog: Catalog) -> list[tuple[str, str]]:
    provider = catalog.providers[slug]
    if not pin_usable(provider):
        state = "retired" if provider.archived_at is not None else "disabled"
        raise PinError(provider, state,
                       f"{requested!r} is pinned to the provider {slug!r} ({provider.name}), which is {state}; "
                       "a pinned model is never served by another provider. Name the model without the provider "
                       "prefix to let your provider order choose.", code="provider_disabled", status=404)
    return [(slug, model)]


def dearer(route: Route, than: Route) -> bool:
    """Whether `route` could cost more than `than` for the same tokens (rates times multiplier, input or output)."""
    if route.rate is None or than.rate is None:
        return False
    mult, ref = route.multiplier, than.multiplier
    return (route.rate.input_rate * mult > than.rate.input_rate * ref
            or route.rate.output_rate * mult > than.rate.output_rate * ref)


def drop_dearer(routes: list[Route]) -> list[Route]:
    """The first route and the fallbacks that cost no more than it."""
    return routes[:1] + [r for r in routes[1:] if not dearer(r, routes[0])]


def _target(provider: Provider, base_url: str, api_key: str | None, settings: Settings, *,
            user_url: bool) -> Target:
    return Target(
        provider=provider.slug, api_style=provider.api_style, base_url=base_url.rstrip("/"), api_key=api_key,
        allow_private=(not user_url) or settings.byok_allow_private_urls,
        connect_timeout=settings.upstream_connect_timeout, read_timeout=settings.upstream_read_timeout,
        extra_headers=provider.header_pairs,  # what the provider needs on every request (an api-version, ...)
    )


def effective_mode(ctx: UserContext) -> str:
    """The mode a request is served in: the user's, unless a personal API key restricts it to one mode."""
    key = ctx.api_key
    return key.mode if key is not None and key.mode in ("member", "byok") else ctx.preferences.llm_mode


def _not_allowed(model: str) -> Forbidden:
    return Forbidden(f"This API key may not call {model!r}: it is not on the key's allow-list.",
                     code="model_not_allowed")


def plan(model: str, task: str | None, byok: ByokHeaders | None, ctx: UserContext, catalog: Catalog,
         settings: Settings, keyring: KeyRing) -> Plan:
    """Build the ordered routes for one request, or raise an AppError saying why none exists. `provider/model` is
    a pin: only that provider's routes, whatever the user's order. A personal API key narrows it: only routes on
    the key's allow-list (fallbacks included), only in the key's mode. Member mode drops the fallbacks dearer than
    the first route unless the user allows dearer fallbacks."""
    prefs = ctx.preferences
    scope = ctx.api_key
    override = prefs.task_overrides.get(task) if task else None
    if isinstance(override, dict) and override.get("model"):
        model = f"{override['provider']}/{override['model']}" if override.get("provider") else override["model"]
    explicit, bare = split_model(model, catalog)
    mode = effective_mode(ctx)
    if byok is not None:
        if mode == "member" and scope is not None:
            raise Forbidden("This API key is for member mode only: it cannot carry X-BYOK-API-Key.",
                            code="mode_not_allowed", field="X-BYOK-API-Key")
        route = _header_route(explicit, bare, byok, catalog, settings)
        if scope is not None and not scope.allows(route.provider.slug, route.model):
            raise _not_allowed(model)
        return Plan([route], "byok", task, model)
    pairs = _pinned(explicit, bare, model, catalog) if explicit else _candidates(bare, ctx, catalog)
    if not pairs:
        prefix, sep, _ = model.partition("/")
        unknown = f" ({prefix!r} is not a provider here)" if sep and prefix not in catalog.providers else ""
        raise NotFound(f"No enabled provider serves the model {model!r}{unknown}.", code="model_not_found",
                       field="model")
    if scope is not None:
        if explicit and not scope.allows(explicit, bare):
            raise _not_allowed(model)  # a provider named in the request is never swapped for an allowed one
        pairs = [(s, m) for s, m in pairs if scope.allows(s, m)]
        if not pairs:
            raise _not_allowed(model)
    if mode == "byok":
        routes = _stored_routes(pairs, ctx, catalog, settings, keyring)
        if not routes:
            if explicit:
                provider = catalog.providers[explicit]
                raise PinError(provider, "no_key", f"You are in BYOK mode but have no usable stored key for "
                               f"{provider.name} ({explicit!r}), which {model!r} is pinned to. Add a key in settings "
                               "or send X-BYOK-API-Key.", code="byok_key_missing", status=400, field=None)
            raise AppError("You are in BYOK mode but have no stored key for a provider serving this model. Add a key "
                           "in settings or send X-BYOK-API-Key.", code="byok_key_missing", status=400)
    else:
        if prefs.never_spend_credits:
            raise AppError("Your settings forbid spending credits; switch to BYOK or allow credits.",
                           code="credits_disabled", status=402)
        routes = _member_routes(pairs, catalog, settings, keyring)
        if not routes:
            if explicit:
                provider = catalog.providers[explicit]
                raise PinError(provider, "not_offered", f"{provider.name} ({explicit!r}) does not offer the model "
                               f"{bare!r} in member mode right now, and {model!r} is pinned to it.",
                               code="model_not_available", status=404)
            raise AppError(f"The model {model!r} is not offered in member mode right now.",
                           code="model_not_available", status=404)
        if not prefs.allow_dearer_fallbacks:
            routes = drop_dearer(routes)
    if not prefs.fallbacks_enabled:
        routes = routes[:1]
    return Plan(routes, routes[0].mode, task, model)


def _header_route(explicit: str | None, model: str, byok: ByokHeaders, catalog: Catalog,
                  settings: Settings) -> Route:
    slug = (byok.provider or explicit or "").strip().lower()
    provider = catalog.providers.get(slug)
    if provider is None:
        raise AppError("Say which provider your key is for: X-BYOK-Provider or a provider/model name.",
                       code="byok_provider_required", status=400, field="X-BYOK-Provider")
    if not pin_usable(provider) or not provider.byok_allowed:
        raise Forbidden(f"Bring-your-own-key is not allowed for {provider.name}.", code="byok_not_allowed",
                        headers={"X-Switchboard-Fallback": f"{slug}:byok_not_allowed"})
    if byok.base_url and not provider.custom_base_url_allowed:
        raise Forbidden(f"{provider.name} does not accept a custom base URL.", code="base_url_not_allowed")
    if not byok.base_url and not byok_free_here(provider, catalog, settings):
        raise Forbidden(f"{provider.name} is an engine the operator runs without a key: bring your own engine's "
                        "base URL (X-BYOK-Base-URL) or use member mode.", code="byok_needs_own_engine",
                        field="X-BYOK-Base-URL")
    if explicit and slug != explicit:
        raise AppError(f"The model is pinned to {explicit!r} but X-BYOK-Provider names {slug!r}: a pinned model is "
                       "served by its provider only.", code="byok_provider_mismatch", status=400,
                       field="X-BYOK-Provider")
    base = byok.base_url or provider.base_url
    target = _target(provider, base, byok.api_key, settings, user_url=bool(byok.base_url))
    return Route(provider, model, target, "byok", "byok_header")


def _stored_routes(pairs: list[tuple[str, str]], ctx: UserContext, catalog: Catalog, settings: Settings,
                   keyring: KeyRing) -> list[Route]:
    keys = {catalog.by_id[k.provider_id].slug: k for k in ctx.keys if k.provider_id in catalog.by_id}
    # Billed to a team: the team's keys (bound to the team row), never another team's or a user's.
    owner = ctx.team.id if ctx.team is not None else ctx.preferences.user_id
    routes = []
    for slug, model in pairs:
        provider, key = catalog.providers[slug], keys.get(slug)
        if key is None or not provider.byok_allowed or key.user_id != owner:
            continue
        if not key.base_url and not byok_free_here(provider, catalog, settings):
            continue  # any string would "work" as a key on the operator's keyless engine: not the user's own
        try:
            aad = team_aad(owner, key.provider_id) if ctx.team is not None else byok_aad(key.user_id, key.provider_id)
            secret = keyring.decrypt(key.ciphertext, aad)
        except DecryptError:
            continue  # unreadable (tampered, copied from another user, retired encryption key): never used
        target = _target(provider, key.base_url or provider.base_url, secret, settings, user_url=bool(key.base_url))
        routes.append(Route(provider, model, target, "byok", "byok_stored", user_key_id=key.id))
    return routes


def _admin_secret(provider: Provider, catalog: Catalog, keyring: KeyRing) -> tuple[str, str] | None:
    for key in catalog.admin_keys.get(provider.slug, []):
        try:
            return key.id, keyring.decrypt(key.ciphertext, admin_aad(provider.id))
        except DecryptError:
            continue
    return None


def member_ready(provider: Provider, catalog: Catalog, settings: Settings) -> bool:
    """Whether member mode has a way to serve this provider: the same sources, in the same order, as
    `_member_routes` (a stored admin key, an environment key, or a keyless local engine)."""
    return bool(catalog.admin_keys.get(provider.slug)) or provider.slug in settings.admin_env_keys \
        or keyless(provider)


def _member_routes(pairs: list[tuple[str, str]], catalog: Catalog, settings: Settings,
                   keyring: KeyRing) -> list[Route]:
    routes = []
    for slug, model in pairs:
        provider, rate = catalog.providers[slug], offered_rate(catalog, slug, model)
        if rate is None:
            continue  # member mode only serves models with a price
        db_key = _admin_secret(provider, catalog, keyring)
        if db_key is not None:
            target = _target(provider, provider.base_url, db_key[1], settings, user_url=False)
            routes.append(Route(provider, model, target, "member", "admin_db", rate, admin_key_id=db_key[0]))
        elif slug in settings.admin_env_keys:
            target = _target(provider, provider.base_url, settings.admin_env_keys[slug], settings, user_url=False)
            routes.append(Route(provider, model, target, "member", "admin_env", rate))
        elif keyless(provider):
            # A local engine registered by the admin (Ollama, LM Studio) or one marked keyless needs no key.
            target = _target(provider, provider.base_url, None, settings, user_url=False)
            routes.append(Route(provider, model, target, "member", "none", rate))
    return routes
