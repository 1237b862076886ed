"""Routing that does what the user said, as properties over generated plans: for any catalog (providers enabled or
not, retired or not, local or remote, with or without admin keys, models priced or switched off), any preferences
(mode, order, default, fallbacks, dearer fallbacks, task overrides), any stored keys, any personal API key scope and
any BYOK headers:

* a pinned request (`provider/model`, or a task override naming a provider) is planned on that provider only, or
  refused — never served by another provider;
* a refusal of a pin names the pinned provider;
* every planned route is on an enabled, unretired provider, within the key's allow-list and mode;
* in member mode without dearer fallbacks, no fallback costs more per token than the first route."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from webapp.config import Settings
from webapp.crypto import KeyRing, admin_aad, byok_aad
from webapp.errors import AppError
from webapp.repos.api_keys import KeyScope
from webapp.repos.context import UserContext
from webapp.repos.preferences import Preferences
from webapp.repos.providers import AdminKey, ModelRate, Provider
from webapp.repos.user_keys import UserKeySecret
from webapp.services import router
from webapp.services.catalog import Catalog

RING = KeyRing({"k1": b"p" * 32})
USER = str(uuid.UUID(int=7))
SLUGS = ["alpha", "beta", "gamma", "local", "remote"]
MODELS = ["m1", "m2", "shared"]
MULTIPLIERS = [Decimal("0.1"), Decimal("1"), Decimal("1.5"), Decimal("2")]


mostly = st.sampled_from([True, True, True, False])  # enabled, priced, keyed... most of the time, so plans succeed


def pid(slug: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_DNS, f"prop-{slug}"))


# Encryption is the slow part: one admin key and one stored key per slug, made once.
ADMIN_KEYS = {s: AdminKey(str(uuid.uuid5(uuid.NAMESPACE_URL, s)), pid(s), *RING.encrypt(f"sk-admin-{s}-0001",
                                                                                     admin_aad(pid(s))), "0001", "")
              for s in SLUGS}
USER_KEYS = {s: UserKeySecret(str(uuid.uuid5(uuid.NAMESPACE_OID, s)), USER, pid(s),
                              *RING.encrypt(f"sk-user-{s}-0002", byok_aad(USER, pid(s))), None, 100)
             for s in SLUGS}


@st.composite
def providers(draw: Any, slug: str) -> Provider:
    archived = None if draw(mostly) else datetime(2026, 11, 1, tzinfo=UTC)
    local = slug == "local" or draw(st.booleans())
    base = "http://127.0.0.1:11434/v1" if local else f"https://{slug}.example/v1"
    return Provider(pid(slug), slug, slug.title(), draw(st.sampled_from(["openai", "anthropic"])), base, "m1",
                    draw(mostly), draw(st.sampled_from(MULTIPLIERS)), draw(mostly),
                    draw(st.booleans()), draw(st.integers(0, 100)), draw(st.booleans()),
                    needs_key=draw(st.booleans()), archived_at=archived)


@st.composite
def catalogs(draw: Any) -> tuple[Catalog, Settings]:
    slugs = draw(st.lists(st.sampled_from(SLUGS), min_size=2, max_size=len(SLUGS), unique=True))
    provs = [draw(providers(s)) for s in slugs]
    rates = {}
    for p in provs:
        for model in MODELS:
            if not draw(mostly):
                continue
            rates[(p.slug, model)] = ModelRate(p.id, model, draw(st.integers(0, 5000)), draw(st.integers(0, 5000)),
                                               draw(st.sampled_from([16, 8192, 128000])), 4096,
                                               draw(st.none() | st.integers(0, 5000)), draw(mostly))
    keyed = [s for s in slugs if draw(mostly)]
    env = draw(st.lists(st.sampled_from(slugs), unique=True))
    cat = Catalog(1, {p.slug: p for p in provs}, {p.id: p for p in provs}, rates,
                  {s: [ADMIN_KEYS[s]] for s in keyed})
    cfg = Settings(secret_key="s" * 40, database_url="postgresql://x", jwt_secret="j" * 40,
                   encryption_keys={"k1": b"p" * 32}, admin_env_keys={s: f"env-key-{s}-0003" for s in env})
    return cat, cfg


@st.composite
def contexts(draw: Any) -> UserContext:
    model_names = st.sampled_from([*MODELS, "unknown-model"])
    overrides = draw(st.dictionaries(st.sampled_from(["summarize", "code"]),
                                     st.fixed_dictionaries({"provider": st.sampled_from([*SLUGS, "gone"]),
                                                            "model": model_names}), max_size=2))
    prefs = Preferences(
        user_id=USER, llm_mode=draw(st.sampled_from(["member", "byok"])),
        default_provider=draw(st.none() | st.sampled_from(SLUGS)),
        fallbacks_enabled=draw(mostly), never_spend_credits=not draw(mostly),
        provider_priorities=draw(st.lists(st.sampled_from(SLUGS), unique=True)), task_overrides=overrides,
        allow_dearer_fallbacks=draw(st.booleans()))
    keys = [USER_KEYS[s] for s in SLUGS if draw(mostly)]
    scope = None
    if not draw(mostly):
        allow = draw(st.lists(st.sampled_from(SLUGS + [f"{s}/{m}" for s in SLUGS for m in MODELS]), max_size=4))
        scope = KeyScope(str(uuid.UUID(int=9)), "k", draw(st.sampled_from(["user", "member", "byok"])), tuple(allow),
                         None)
    return UserContext(prefs, keys, 1, api_key=scope)


byok_headers = st.none() | st.none() | st.none() | st.builds(router.ByokHeaders, api_key=st.just("sk-header-key-0004"),
                                     provider=st.none() | st.sampled_from(SLUGS),
                                     base_url=st.none() | st.just("https://mine.example/v1"))


def effective_model(model: str, task: str | None, ctx: UserContext) -> str:
    rule = ctx.preferences.task_overrides.get(task) if task else None
    if isinstance(rule, dict) and rule.get("model"):
        return f"{rule['provider']}/{rule['model']}" if rule.get("provider") else rule["model"]
    return model


def try_plan(model: str, task: str | None, byok: Any, ctx: UserContext, cat: Catalog,
             cfg: Settings) -> router.Plan | AppError:
    try:
        return router.plan(model, task, byok, ctx, cat, cfg, RING)
    except AppError as exc:
        return exc


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(catalogs(), contexts(), st.data(), st.sampled_from([*MODELS, "unknown-model"]),
       st.none() | st.none() | st.sampled_from(["summarize", "code", "other"]), byok_headers)
def test_a_pinned_request_is_planned_on_its_provider_only(cat_cfg: tuple[Catalog, Settings], ctx: UserContext,
                                                          data: Any, model: str, task: str | None,
                                                          byok: Any) -> None:
    cat, cfg = cat_cfg
    slug = data.draw(st.sampled_from(sorted(cat.providers)))
    asked = effective_model(f"{slug}/{model}", task, ctx)
    pinned, _, bare = asked.partition("/")
    result = try_plan(f"{slug}/{model}", task, byok, ctx, cat, cfg)
    if pinned not in cat.providers:  # "gone/x" from an override: not a pin, a bare model named "gone/x"
        assert isinstance(result, AppError) or all(r.model == asked for r in result.routes)
        return
    if isinstance(result, AppError):
        if isinstance(result, router.PinError):
            assert result.headers["X-Switchboard-Provider"] == pinned
            assert result.headers["X-Switchboard-Fallback"].startswith(pinned + ":")
            assert pinned in result.message
        return
    assert result.routes, "a plan always has a route"
    assert {r.provider.slug for r in result.routes} == {pinned}, "a pin never crosses providers"
    assert all(r.model == bare for r in result.routes)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(catalogs(), contexts(), st.sampled_from([*MODELS, "unknown-model"]))
def test_a_bare_model_plan_stays_within_the_rules(cat_cfg: tuple[Catalog, Settings], ctx: UserContext,
                                                  model: str) -> None:
    cat, cfg = cat_cfg
    result = try_plan(model, None, None, ctx, cat, cfg)
    if isinstance(result, AppError):
        return
    prefs, scope = ctx.preferences, ctx.api_key
    for route in result.routes:
        assert router.pin_usable(route.provider), "a disabled or retired provider is never planned"
        if scope is not None:
            assert scope.allows(route.provider.slug, route.model)
    assert len({r.provider.slug for r in result.routes}) == len(result.routes)
    if not prefs.fallbacks_enabled:
        assert len(result.routes) == 1
    if result.mode == "member":
        assert all(r.rate is not None for r in result.routes), "member mode serves priced models only"
        if not prefs.allow_dearer_fallbacks:
            first = result.routes[0]
            for r in result.routes[1:]:
                assert r.rate is not None and first.rate is not None
                assert r.rate.input_rate * r.multiplier <= first.rate.input_rate * first.multiplier
                assert r.rate.output_rate * r.multiplier <= first.rate.output_rate * first.multiplier


def _two_providers(**first: Any) -> tuple[Catalog, Settings]:
    provs = [Provider(pid(s), s, s.title(), "openai", "http://127.0.0.1:11434/v1", "m1", True, Decimal(1), True,
                      False, i) for i, s in enumerate(("alpha", "beta"))]
    provs[0] = dataclasses.replace(provs[0], **first)
    rates = {(p.slug, "m1"): ModelRate(p.id, "m1", 10, 20, 8192) for p in provs}
    cfg = Settings(secret_key="s" * 40, database_url="postgresql://x", jwt_secret="j" * 40,
                   encryption_keys={"k1": b"p" * 32})
    return Catalog(1, {p.slug: p for p in provs}, {p.id: p for p in provs}, rates), cfg


@given(st.sampled_from([{"enabled": False}, {"archived_at": datetime(2026, 11, 1, tzinfo=UTC), "enabled": False}]))
def test_a_pin_to_a_disabled_or_retired_provider_says_which(first: dict[str, Any]) -> None:
    """`alpha/m1` with alpha off while beta serves m1 (the reported bug: Ollama off, LM Studio served and priced)."""
    cat, cfg = _two_providers(**first)
    ctx = UserContext(Preferences(user_id=USER, allow_dearer_fallbacks=True), [], 1)
    assert [r.provider.slug for r in router.plan("m1", None, None, ctx, cat, cfg, RING).routes] == ["beta"]
    err = try_plan("alpha/m1", None, None, ctx, cat, cfg)
    assert isinstance(err, router.PinError) and err.code == "provider_disabled" and err.status == 404
    state = "retired" if first.get("archived_at") else "disabled"
    assert f"'alpha' (Alpha), which is {state}" in err.message
    assert err.headers == {"X-Switchboard-Fallback": f"alpha:{state}", "X-Switchboard-Provider": "alpha"}
