"""`flask keys rotate` also re-seals webhook signing secrets (the current one and, for a day after a secret rotation,
the previous one), so an old encryption key can leave ENCRYPTION_KEYS without breaking any endpoint's signatures."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from tests.api.test_admin_key_rotation import (
    NEW_KEY,
    app_with_keys,
    restore_suite_key,  # noqa: F401  (the fixture, used by name)
    rotate,
    suite_key,
)
from tests.support.admin import close_app
from webapp.config import Settings, parse_encryption_keys
from webapp.crypto import KeyRing
from webapp.notify.webhooks import secret_aad


@pytest.mark.usefixtures("restore_suite_key")
def test_rotation_reseals_current_and_previous_webhook_secrets(settings: Settings, make_user: Any,
                                                                 admin_conn: psycopg.Connection) -> None:
    user = make_user()
    old_app = app_with_keys(settings.with_overrides(webhook_allow_private_urls=True), suite_key(settings))
    try:
        c = old_app.test_client()
        r = c.post("/api/user/webhooks", json={"url": "http://127.0.0.1:9/hook", "event_types": ["api_key.created"]},
                   headers=user.headers)
        assert r.status_code == 201, r.get_json()
        endpoint, first = r.get_json()["webhook"], r.get_json()["secret"]
        r = c.post(f"/api/user/webhooks/{endpoint['id']}/rotate-secret", headers=user.headers)
        assert r.status_code == 200, r.get_json()
        second = r.get_json()["secret"]
    finally:
        close_app(old_app)
    row = admin_conn.execute("select secret_ciphertext, previous_secret_ciphertext, secret_key_id"
                             " from public.webhook_endpoints where id = %s", [endpoint["id"]]).fetchone()
    assert row is not None and row[0].startswith("v1.k1.") and row[1].startswith("v1.k1.") and row[2] == "k1"

    both = app_with_keys(settings, f"{NEW_KEY},{suite_key(settings)}")
    try:
        result = rotate(both)
    finally:
        close_app(both)
    assert endpoint["id"] not in result.output, "the endpoint's secrets are not reported unreadable"

    row = admin_conn.execute("select secret_ciphertext, previous_secret_ciphertext, secret_key_id"
                             " from public.webhook_endpoints where id = %s", [endpoint["id"]]).fetchone()
    assert row is not None and row[2] == "k2"
    k2_only = KeyRing(parse_encryption_keys("ENCRYPTION_KEYS", NEW_KEY))
    assert k2_only.decrypt(row[0], secret_aad(endpoint["id"])) == second
    assert k2_only.decrypt(row[1], secret_aad(endpoint["id"])) == first
