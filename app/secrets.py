"""Credentials kept in the database are encrypted (Fernet: AES-128-CBC + HMAC-SHA256) and shown masked.

The key is ``RECOUP_CREDENTIALS_KEY`` (a Fernet key), or derived from ``SECRET_KEY`` with HKDF when none is given,
so a database dump alone does not reveal a gateway key.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


class SecretsError(Exception):
    pass


def _fernet(config: Any) -> Fernet:
    key = config.get("CREDENTIALS_KEY")
    if key:
        return Fernet(key.encode() if isinstance(key, str) else key)
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"recoup-credentials", info=b"v1").derive(
        str(config["SECRET_KEY"]).encode("utf-8")
    )
    return Fernet(base64.urlsafe_b64encode(derived))


def encrypt_credentials(config: Any, values: dict[str, str]) -> bytes:
    return _fernet(config).encrypt(json.dumps(values, sort_keys=True).encode("utf-8"))


def decrypt_credentials(config: Any, token: bytes | None) -> dict[str, str]:
    if not token:
        return {}
    try:
        return dict(json.loads(_fernet(config).decrypt(token)))
    except InvalidToken:
        raise SecretsError(
            "stored credentials cannot be decrypted: was SECRET_KEY or RECOUP_CREDENTIALS_KEY changed?"
        ) from None


def mask(secret: str | None) -> str:
    if not secret:
        return ""
    return "•" * 8 + secret[-4:] if len(secret) > 8 else "•" * len(secret)
