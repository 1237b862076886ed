"""The user's stored BYOK keys: save (encrypted, bound to the user), test, list masked, remove."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from webapp.config import Settings
from webapp.crypto import KeyRing, byok_aad, last4
from webapp.db import Database
from webapp.errors import Forbidden, NotFound, ValidationError
from webapp.providers import get_adapter
from webapp.providers.base import Target, UpstreamFailure
from webapp.providers.transport import check_base_url
from webapp.repos import user_keys as keys_repo
from webapp.repos.providers import Provider
from webapp.services.catalog import Catalog

TEST_TIMEOUT = 3.0


@dataclass(frozen=True)
class KeyCheck:
    status: str  # "ok", "rejected", "unreachable", "skipped"
    message: str


def _provider(catalog: Catalog, slug: str) -> Provider:
    provider = catalog.providers.get(slug)
    if provider is None or not provider.enabled:
        raise NotFound(f"No enabled provider {slug!r}.", code="provider_not_found")
    if not provider.byok_allowed:
        raise Forbidden(f"{provider.name} does not accept your own key.", code="byok_not_allowed")
    return provider


def validate_key(provider: Provider, api_key: Any, base_url: Any, settings: Settings) -> tuple[str, str | None]:
    errors = {}
    # Printable ASCII only: the key travels in an HTTP header, which cannot carry other characters (a stored
    # non-ASCII key made every later request with it fail with UnicodeEncodeError), and Postgres refuses NUL.
    # At most 500 characters as sent (the documented maxLength), at least 8 once surrounding whitespace is gone.
    if not isinstance(api_key, str) or len(api_key) > 500 or len(api_key.strip()) < 8 \
            or any(not "!" <= c <= "~" for c in api_key.strip()):
        errors["api_key"] = "Paste the whole key (8 to 500 characters, no spaces)."
    url = None
    if base_url not in (None, ""):
        if not provider.custom_base_url_allowed:
            errors["base_url"] = f"{provider.name} does not accept a custom base URL."
        elif not isinstance(base_url, str) or len(base_url) > 500 or "\x00" in base_url:
            errors["base_url"] = "Enter an http(s) URL."
        else:
            try:
                if not settings.byok_allow_private_urls:
                    check_base_url(base_url.strip())
                elif not base_url.strip().startswith(("http://", "https://")):
                    raise ValueError("Enter an http(s) URL.")
                url = base_url.strip().rstrip("/")
            except ValueError as exc:
                errors["base_url"] = str(exc)
    if errors:
        raise ValidationError(errors)
    return str(api_key).strip(), url


def test_key(provider: Provider, api_key: str, base_url: str | None, settings: Settings) -> KeyCheck:
    """A cheap models-list call with a short timeout. Never blocks a save: an unreachable provider is reported."""
    target = Target(provider=provider.slug, api_style=provider.api_style, base_url=base_url or provider.base_url,
                    api_key=api_key, allow_private=(not base_url) or settings.byok_allow_private_urls,
                    connect_timeout=TEST_TIMEOUT, read_timeout=TEST_TIMEOUT,
                    extra_headers=provider.header_pairs)  # as every request to it carries them
    try:
        models = get_adapter(provider.api_style).list_models(target)
    except UpstreamFailure as exc:
        if exc.status in (401, 403):
            return KeyCheck("rejected", f"{provider.name} refused this key.")
        return KeyCheck("unreachable", f"Could not check the key now ({exc.kind}); it was saved anyway.")
    return KeyCheck("ok", f"The key works ({len(models)} models available).")


def put(db: Database, settings: Settings, keyring: KeyRing, catalog: Catalog, claims: dict[str, Any], slug: str,
        payload: Any, *, run_test: bool = True) -> tuple[keys_repo.UserKeyInfo, KeyCheck]:
    if not isinstance(payload, dict):
        raise ValidationError({"body": "Send a JSON object with api_key and optional base_url."})
    provider = _provider(catalog, slug)
    api_key, base_url = validate_key(provider, payload.get("api_key"), payload.get("base_url"), settings)
    user_id = str(claims["sub"])
    ciphertext, kid = keyring.encrypt(api_key, byok_aad(user_id, provider.id))
    with db.as_user(claims) as conn:
        keys_repo.upsert(conn, user_id, provider.id, ciphertext, kid, last4(api_key), base_url)
        info = next(k for k in keys_repo.list_for_owner(conn, user_id) if k.provider_id == provider.id)
    check = test_key(provider, api_key, base_url, settings) if run_test else KeyCheck("skipped", "")
    return info, check


def delete(db: Database, catalog: Catalog, claims: dict[str, Any], slug: str) -> None:
    provider = catalog.providers.get(slug)
    if provider is None:
        raise NotFound(f"No provider {slug!r}.", code="provider_not_found")
    with db.as_user(claims) as conn:
        if not keys_repo.delete(conn, str(claims["sub"]), provider.id):
            raise NotFound(f"You have no stored key for {provider.name}.", code="key_not_found")


def listing(db: Database, catalog: Catalog, claims: dict[str, Any]) -> list[dict[str, Any]]:
    with db.as_user(claims) as conn:
        rows = keys_repo.list_for_owner(conn, str(claims["sub"]))
    return [key_dict(r, catalog) for r in rows if r.provider_id in catalog.by_id]


def key_dict(row: keys_repo.UserKeyInfo, catalog: Catalog) -> dict[str, Any]:
    return {"provider": catalog.by_id[row.provider_id].slug, "last4": row.last4, "base_url": row.base_url,
            "enabled": row.enabled, "priority": row.priority,
            "last_used_at": row.last_used_at.isoformat() if row.last_used_at else None}
