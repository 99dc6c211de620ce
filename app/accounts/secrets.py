"""Credentials kept in the database are encrypted (Fernet: AES-128-CBC + HMAC-SHA256) and shown masked.

The keys live outside the database: ``RECOUP_ENCRYPTION_KEY`` (config ``ENCRYPTION_KEYS``), a list of Fernet keys
whose first encrypts and every one decrypts, so a key is rotated by putting the new one first, running
``flask secrets rotate`` (:func:`rotate_credentials`: every stored secret re-encrypted with the first key) and then
dropping the old one. ``RECOUP_CREDENTIALS_KEY``, the older name, is one more such key.

Without any key (development, tests, the demo) the key is derived from ``SECRET_KEY`` with HKDF, as it always was;
that derived key also stays a decrypting key everywhere, so secrets stored before a key was configured still read
(and ``flask secrets rotate`` moves them to the configured key). Production refuses to start without a key of its
own (``config.production_problems``): a database dump and a guessable ``SECRET_KEY`` must not reveal a gateway key.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


class SecretsError(Exception):
    pass


def _configured_keys(config: Any) -> list[Fernet]:
    raw = list(config.get("ENCRYPTION_KEYS") or ())
    if config.get("CREDENTIALS_KEY"):
        raw.append(config["CREDENTIALS_KEY"])
    return [Fernet(key.encode() if isinstance(key, str) else key) for key in dict.fromkeys(raw)]


def _derived_key(config: Any) -> Fernet:
    """The key older versions derived from SECRET_KEY (and development still does)."""
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"recoup-credentials", info=b"v1").derive(
        str(config["SECRET_KEY"]).encode("utf-8")
    )
    return Fernet(base64.urlsafe_b64encode(derived))


def _fernet(config: Any) -> MultiFernet:
    """Every key that may decrypt, the one that encrypts first."""
    return MultiFernet([*_configured_keys(config), _derived_key(config)])


def encrypt_credentials(config: Any, values: dict[str, str]) -> bytes:
    return _fernet(config).encrypt(json.dumps(values, sort_keys=True).encode("utf-8"))


def decrypt_credentials(config: Any, token: bytes | None) -> dict[str, str]:
    if not token:
        return {}
    try:
        return dict(json.loads(_fernet(config).decrypt(token)))
    except InvalidToken:
        raise SecretsError(
            "stored credentials cannot be decrypted with any configured key: was a key removed from "
            "RECOUP_ENCRYPTION_KEY (or RECOUP_CREDENTIALS_KEY), or SECRET_KEY changed?"
        ) from None


def rotate_credentials(config: Any, *, actor: str = "cli") -> int:
    """Re-encrypt every stored secret with the first key (gateway and channel accounts), in one transaction; the
    number of secrets moved. Refuses (nothing changed) when one cannot be decrypted."""
    import sqlalchemy as sa

    from app.audit import record
    from app.extensions import db
    from app.models import ChannelAccount, GatewayAccount

    keys = _fernet(config)
    moved = 0
    for model in (GatewayAccount, ChannelAccount):
        for account in db.session.scalars(sa.select(model).where(model.credentials_encrypted.is_not(None))):
            try:
                account.credentials_encrypted = keys.rotate(account.credentials_encrypted)
            except InvalidToken:
                db.session.rollback()
                raise SecretsError(
                    f"{model.__tablename__} #{account.id} cannot be decrypted with any configured key; nothing was "
                    "re-encrypted"
                ) from None
            moved += 1
    record(actor, "secrets.rotate", None, None, {"re_encrypted": moved})
    db.session.commit()
    return moved


def mask(secret: str | None) -> str:
    if not secret:
        return ""
    return "•" * 8 + secret[-4:] if len(secret) > 8 else "•" * len(secret)
