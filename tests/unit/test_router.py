"""Routing rules, as pure functions over a hand-built catalog."""

from __future__ import annotations

import base64
import uuid
from decimal import Decimal

import pytest

from webapp.config import Settings
from webapp.crypto import DecryptError, KeyRing, admin_aad, byok_aad
from webapp.errors import AppError
from webapp.repos.context import UserContext
from webapp.repos.preferences import Preferences
from webapp.repos.providers import AdminKey, ModelRate, Provider
from webapp.repos.user_keys import UserKeySecret
from webapp.services import router
from webapp.services.catalog import Catalog

RING = KeyRing({"k1": b"r" * 32})
USER = str(uuid.uuid4())
OTHER = str(uuid.uuid4())


def provider(slug: str, *, style: str = "openai", base: str | None = None, enabled: bool = True,
             mult: str = "1.0", order: int = 10) -> Provider:
    return Provider(str(uuid.uuid5(uuid.NAMESPACE_DNS, slug)), slug, slug.title(), style,
                    base or f"https://{slug}.example/v1", "m1", enabled, Decimal(mult), True,
                    slug in ("openai", "ollama"), order)


PROVIDERS = [provider("openai", order=10), provider("github", mult="1.5", order=20),
             provider("anthropic", style="anthropic", order=30),
             provider("ollama", base="http://127.0.0.1:11434/v1", mult="0.1", order=80),
             provider("groq", enabled=False, order=50)]


def catalog(admin_keys: dict[str, list[AdminKey]] | None = None) -> Catalog:
    by_slug = {p.slug: p for p in PROVIDERS}
    rates = {}
    for slug in by_slug:
        for model in ("m1", "shared"):
            rates[(slug, model)] = ModelRate(by_slug[slug].id, model, 100, 200, 8000)
    return Catalog(1, by_slug, {p.id: p for p in PROVIDERS}, rates, admin_keys or {})


def admin_key(slug: str, secret: str) -> AdminKey:
    pid = next(p.id for p in PROVIDERS if p.slug == slug)
    ct, kid = RING.encrypt(secret, admin_aad(pid))
    return AdminKey(str(uuid.uuid4()), pid, ct, kid, secret[-4:], "")


def stored_key(slug: str, secret: str, owner: str = USER, bound_to: str | None = None,
               base_url: str | None = None) -> UserKeySecret:
    pid = next(p.id for p in PROVIDERS if p.slug == slug)
    ct, kid = RING.encrypt(secret, byok_aad(bound_to or owner, pid))
    return UserKeySecret(str(uuid.uuid4()), owner, pid, ct, kid, base_url, 100)


def ctx(**prefs: object) -> UserContext:
    keys = prefs.pop("keys", [])
    return UserContext(Preferences(user_id=USER, **prefs), keys, 1)  # type: ignore[arg-type]


SETTINGS = Settings(secret_key="s" * 40, database_url="postgresql://x", jwt_secret="j" * 40,
                    encryption_keys={"k1": b"r" * 32}, admin_env_keys={"github": "env-github-key-1234"})


def plan(model: str, c: UserContext, cat: Catalog | None = None, task: str | None = None,
         byok: router.ByokHeaders | None = None) -> router.Plan:
    return router.plan(model, task, byok, c, cat or catalog({"openai": [admin_key("openai", "sk-admin-openai-1")],
                                                             "anthropic": [admin_key("anthropic", "sk-ant-a1")]}),
                       SETTINGS, RING)


def slugs(p: router.Plan) -> list[str]:
    return [r.provider.slug for r in p.routes]


def test_bare_model_follows_user_priorities_and_skips_disabled() -> None:
    # (GitHub's 1.5x makes it dearer than the first route: it stays only because dearer fallbacks are allowed.)
    p = plan("shared", ctx(provider_priorities=["anthropic", "openai"], allow_dearer_fallbacks=True))
    assert slugs(p) == ["anthropic", "openai", "github", "ollama"]
    assert "groq" not in slugs(p)


def test_explicit_provider_comes_first() -> None:
    p = plan("github/shared", ctx(provider_priorities=["anthropic"]))
    assert slugs(p)[0] == "github"
    assert p.routes[0].model == "shared"


def test_member_key_sources_database_then_environment_then_local() -> None:
    p = plan("shared", ctx(allow_dearer_fallbacks=True))
    sources = {r.provider.slug: r.key_source for r in p.routes}
    assert sources == {"openai": "admin_db", "github": "admin_env", "anthropic": "admin_db", "ollama": "none"}
    assert next(r for r in p.routes if r.provider.slug == "openai").target.api_key == "sk-admin-openai-1"
    assert all(r.mode == "member" for r in p.routes)


def test_fallbacks_off_keeps_one_route() -> None:
    assert len(plan("shared", ctx(fallbacks_enabled=False)).routes) == 1


def test_task_override_picks_provider_and_model() -> None:
    c = ctx(task_overrides={"summarize": {"provider": "anthropic", "model": "m1"}})
    p = plan("shared", c, task="summarize")
    assert p.routes[0].provider.slug == "anthropic" and p.routes[0].model == "m1"


def test_byok_mode_uses_only_the_users_stored_keys() -> None:
    p = plan("shared", ctx(llm_mode="byok", keys=[stored_key("anthropic", "sk-ant-user-key")]))
    assert slugs(p) == ["anthropic"]
    route = p.routes[0]
    assert route.mode == "byok" and route.key_source == "byok_stored"
    assert route.target.api_key == "sk-ant-user-key"
    assert route.multiplier == 0


def test_byok_mode_without_keys_never_falls_back_to_member() -> None:
    with pytest.raises(AppError) as err:
        plan("shared", ctx(llm_mode="byok"))
    assert err.value.code == "byok_key_missing"


def test_another_users_key_copied_into_my_row_is_never_used() -> None:
    stolen = stored_key("openai", "sk-victim-key-999", owner=USER, bound_to=OTHER)
    with pytest.raises(AppError) as err:
        plan("shared", ctx(llm_mode="byok", keys=[stolen]))
    assert err.value.code == "byok_key_missing"


def test_byok_header_route_uses_only_the_header_key() -> None:
    p = plan("openai/m1", ctx(), byok=router.ByokHeaders(api_key="sk-user-header-key"))
    assert len(p.routes) == 1 and p.mode == "byok"
    assert p.routes[0].target.api_key == "sk-user-header-key"
    assert p.routes[0].key_source == "byok_header"


def test_user_supplied_base_url_is_guarded_and_never_gets_an_admin_key() -> None:
    p = plan("m1", ctx(), byok=router.ByokHeaders(api_key="sk-mine-1234", provider="openai",
                                                 base_url="https://my-proxy.example/v1"))
    target = p.routes[0].target
    assert target.base_url == "https://my-proxy.example/v1"
    assert target.allow_private is False
    assert target.api_key == "sk-mine-1234"


def test_custom_base_url_refused_where_the_provider_does_not_allow_it() -> None:
    with pytest.raises(AppError) as err:
        plan("m1", ctx(), byok=router.ByokHeaders(api_key="sk-mine-1234", provider="anthropic",
                                                 base_url="https://elsewhere.example/v1"))
    assert err.value.code == "base_url_not_allowed"


def test_byok_header_requires_a_provider() -> None:
    with pytest.raises(AppError) as err:
        plan("m1", ctx(), byok=router.ByokHeaders(api_key="sk-mine-1234"))
    assert err.value.code == "byok_provider_required"


def test_never_spend_credits_fails_closed_in_member_mode() -> None:
    with pytest.raises(AppError) as err:
        plan("shared", ctx(never_spend_credits=True))
    assert err.value.code == "credits_disabled" and err.value.status == 402


def test_unknown_model_is_not_found() -> None:
    with pytest.raises(AppError) as err:
        plan("no-such-model", ctx())
    assert err.value.code == "model_not_found"


def test_tampered_admin_key_is_skipped() -> None:
    bad = admin_key("openai", "sk-admin-openai-1")
    bad = AdminKey(bad.id, bad.provider_id, bad.ciphertext[:-4] + "AAAA", bad.key_id, bad.last4, "")
    p = plan("m1", ctx(), cat=catalog({"openai": [bad]}))
    assert "openai" not in slugs(p)


def test_keyring_round_trip_and_binding() -> None:
    ct, kid = RING.encrypt("secret-value", "byok:a:b")
    assert kid == "k1" and RING.decrypt(ct, "byok:a:b") == "secret-value"
    assert "secret-value" not in ct
    with pytest.raises(DecryptError):
        RING.decrypt(ct, "byok:other:b")
    assert base64.urlsafe_b64decode(ct.split(".")[2] + "==")
