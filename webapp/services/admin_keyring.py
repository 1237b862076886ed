"""Encryption-key rotation for stored secrets: re-encrypt every admin and BYOK key and every webhook signing
secret with the active encryption key (the first of ENCRYPTION_KEYS), so a retired key can then be removed from the
configuration."""

from __future__ import annotations

from dataclasses import dataclass, field

from webapp.crypto import DecryptError, KeyRing, admin_aad, byok_aad
from webapp.db import Database
from webapp.notify.webhooks import secret_aad as webhook_secret_aad
from webapp.repos import admin as admin_repo


@dataclass(frozen=True)
class Unreadable:
    table: str
    id: str
    reason: str


@dataclass
class RotationReport:
    active_kid: str
    rotated: int = 0
    current: int = 0
    failed: list[Unreadable] = field(default_factory=list)


def _aad(secret: admin_repo.StoredSecret) -> str:
    """The associated data each kind of secret was sealed with (its row's identity)."""
    if secret.table.startswith("webhook_endpoints"):
        return webhook_secret_aad(secret.id)
    if secret.table == "llm_admin_keys":
        return admin_aad(str(secret.provider_id))
    return byok_aad(str(secret.user_id), str(secret.provider_id))


def reencrypt_all(db: Database, keyring: KeyRing, *, dry_run: bool = False) -> RotationReport:
    """One transaction over every stored key (rows locked): keys already under the active key id are left alone,
    the rest are decrypted and sealed again with it. A key that cannot be decrypted is left untouched and reported.
    The audit log records the run."""
    report = RotationReport(keyring.active_kid)
    with db.as_service() as conn:
        for secret in admin_repo.stored_secrets(conn):
            if not keyring.needs_rotation(secret.ciphertext):
                report.current += 1
                continue
            aad = _aad(secret)
            try:
                plaintext = keyring.decrypt(secret.ciphertext, aad)
            except DecryptError as exc:
                report.failed.append(Unreadable(secret.table, secret.id, str(exc)))
                continue
            ciphertext, kid = keyring.encrypt(plaintext, aad)
            if not dry_run:
                admin_repo.replace_ciphertext(conn, secret, ciphertext, kid)
            report.rotated += 1
        if not dry_run and (report.rotated or report.failed):
            admin_repo.insert_audit(conn, None, "keys.reencrypt", "encryption_keys", None,
                                    {"active_key_id": report.active_kid, "rotated": report.rotated,
                                     "unreadable": [f"{f.table}:{f.id}" for f in report.failed]})
    return report
