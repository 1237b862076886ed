"""Encryption of stored API keys: AES-256-GCM, a key id in every ciphertext so the encryption key can rotate.

Format: ``v1.<kid>.<base64url(nonce || ciphertext+tag)>``. The associated data binds a ciphertext to its row
(for example ``byok:<user_id>:<provider_id>``), so a ciphertext copied to another user's row does not decrypt.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM


class DecryptError(Exception):
    """The ciphertext cannot be decrypted with the configured keys (unknown key id, tampered, wrong row)."""


class KeyRing:
    def __init__(self, keys: Mapping[str, bytes]) -> None:
        if not keys:
            raise ValueError("at least one encryption key is required")
        self._keys = dict(keys)
        self.active_kid = next(iter(self._keys))

    def encrypt(self, plaintext: str, aad: str) -> tuple[str, str]:
        """Return (ciphertext, key id) for plaintext bound to aad."""
        nonce = os.urandom(12)
        sealed = AESGCM(self._keys[self.active_kid]).encrypt(nonce, plaintext.encode(), aad.encode())
        token = base64.urlsafe_b64encode(nonce + sealed).decode().rstrip("=")
        return f"v1.{self.active_kid}.{token}", self.active_kid

    def decrypt(self, ciphertext: str, aad: str) -> str:
        try:
            version, kid, token = ciphertext.split(".", 2)
        except ValueError:
            raise DecryptError("malformed ciphertext") from None
        if version != "v1":
            raise DecryptError("unknown ciphertext version")
        key = self._keys.get(kid)
        if key is None:
            raise DecryptError(f"no encryption key with id {kid!r}")
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        try:
            return AESGCM(key).decrypt(raw[:12], raw[12:], aad.encode()).decode()
        except (InvalidTag, ValueError):
            raise DecryptError("ciphertext does not decrypt (tampered or bound to another row)") from None

    def needs_rotation(self, ciphertext: str) -> bool:
        return not ciphertext.startswith(f"v1.{self.active_kid}.")


def last4(secret: str) -> str:
    return secret[-4:] if len(secret) >= 8 else ""


def byok_aad(user_id: str, provider_id: str) -> str:
    return f"byok:{user_id}:{provider_id}"


def admin_aad(provider_id: str) -> str:
    return f"admin:{provider_id}"
