"""The provider catalog (presets, rates, admin keys) cached per worker and reloaded when the database's
catalog_version moves, which every request reads for free alongside the user's context."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from webapp.db import Database
from webapp.repos import providers as providers_repo


@dataclass(frozen=True)
class Catalog:
    version: int
    # by slug, every provider (enabled or not; a retired one with history is archived: never enabled again)
    providers: dict[str, providers_repo.Provider]
    by_id: dict[str, providers_repo.Provider]
    rates: dict[tuple[str, str], providers_repo.ModelRate]  # (slug, model), enabled models only
    admin_keys: dict[str, list[providers_repo.AdminKey]] = field(default_factory=dict)  # by slug, newest first

    def models_of(self, slug: str) -> list[str]:
        return sorted(model for (s, model) in self.rates if s == slug)

    def providers_offering(self, model: str) -> list[str]:
        return [slug for (slug, m) in self.rates if m == model]


class CatalogCache:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._lock = threading.Lock()
        self._catalog: Catalog | None = None

    def get(self, version: int | None = None) -> Catalog:
        """The cached catalog, reloaded when `version` (from the request's context query) differs."""
        current = self._catalog
        if current is not None and (version is None or current.version == version):
            return current
        with self._lock:
            current = self._catalog
            if current is None or (version is not None and current.version != version):
                current = self._load()
                self._catalog = current
            return current

    def invalidate(self) -> None:
        self._catalog = None

    def _load(self) -> Catalog:
        with self.db.as_service() as conn:
            row = conn.execute("select version from public.catalog_version").fetchone()
            providers = providers_repo.list_providers(conn)
            rates = providers_repo.list_rates(conn)
            keys = providers_repo.active_admin_keys(conn)
        by_id = {p.id: p for p in providers}
        admin_keys: dict[str, list[providers_repo.AdminKey]] = {}
        for key in keys:
            if key.provider_id in by_id:
                admin_keys.setdefault(by_id[key.provider_id].slug, []).append(key)
        return Catalog(
            version=int(row[0]) if row else 0,
            providers={p.slug: p for p in providers},
            by_id=by_id,
            # A disabled model is neither offered (/v1/models, quotes) nor routed: it is simply not in the catalog.
            rates={(by_id[r.provider_id].slug, r.model): r for r in rates if r.provider_id in by_id and r.enabled},
            admin_keys=admin_keys,
        )
