"""Channel accounts (SMTP, Twilio, WhatsApp) entered in the admin: stored encrypted, audited without values.

What each channel needs is split into *settings* (not secret: shown, exported, audited by name) and *secrets*
(encrypted with app.accounts.secrets, shown masked, never logged). The enabled account of a channel is what
``app.outbox.senders`` builds the sender from; without one, the environment's configuration is used.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from flask import current_app

from app.accounts.secrets import SecretsError, decrypt_credentials, encrypt_credentials
from app.audit import record
from app.extensions import db
from app.models import ChannelAccount
from rules.vocabulary import Channel


@dataclass(frozen=True)
class ChannelFields:
    settings: tuple[str, ...]
    secrets: tuple[str, ...]
    required: tuple[str, ...]  # settings or secrets without which no sender can be built


#: the secrets a sender presents to the account's ``api_url`` (Basic auth, a bearer token): a new URL needs them
#: typed again
SENT_TO_API: dict[Channel, tuple[str, ...]] = {Channel.SMS: ("auth_token",), Channel.WHATSAPP: ("token",)}

#: what each channel's account holds; the names match the sender's arguments
CHANNEL_FIELDS: dict[Channel, ChannelFields] = {
    # smtp_url carries the password (smtp://user:pass@host:port), so all of it is secret
    Channel.EMAIL: ChannelFields(settings=("from_address",), secrets=("smtp_url",), required=("smtp_url",)),
    Channel.SMS: ChannelFields(
        settings=("account_sid", "from_number", "api_url"),
        secrets=("auth_token",),
        required=("account_sid", "from_number", "auth_token"),
    ),
    Channel.WHATSAPP: ChannelFields(
        settings=("phone_number_id", "waba_id", "api_url"),
        secrets=("token", "app_secret", "verify_token"),
        required=("phone_number_id", "token"),
    ),
}
CHANNELS = tuple(CHANNEL_FIELDS)


class ChannelAccountError(ValueError):
    """Refused: the message names fields, never their values."""


def credentials_of(account: ChannelAccount) -> dict[str, str]:
    """The decrypted secrets of an account ({} when none, or when they cannot be decrypted any more)."""
    try:
        return decrypt_credentials(current_app.config, account.credentials_encrypted)
    except SecretsError:
        return {}


def save_channel_account(
    name: str,
    channel: str,
    *,
    settings: dict[str, Any] | None = None,
    credentials: dict[str, str] | None = None,
    enabled: bool = True,
    actor: str = "system",
    account: ChannelAccount | None = None,
) -> ChannelAccount:
    """Create or update (by ``account``, else by name) a channel account, audit it and commit.

    ``credentials`` holds only the secrets typed this time: an empty or missing one keeps the stored value.
    The audit entry lists which settings and secrets changed, never a value.
    """
    if channel not in CHANNEL_FIELDS:
        raise ChannelAccountError(f"unknown channel {channel!r}")
    fields = CHANNEL_FIELDS[channel]
    if account is None:
        account = db.session.scalar(sa.select(ChannelAccount).where(ChannelAccount.name == name))
    created = account is None
    if account is None:
        account = ChannelAccount(name=name, channel=channel, settings={})
        db.session.add(account)
    stored_secrets = credentials_of(account) if not created else {}
    typed = {k: v.strip() for k, v in (credentials or {}).items() if isinstance(v, str) and v.strip()}
    unknown = set(typed) - set(fields.secrets)
    if unknown:
        raise ChannelAccountError(f"{channel} accounts have no secret named {', '.join(sorted(unknown))}")
    secrets = {**stored_secrets, **typed} if account.channel == channel else typed
    moved = not created and str((settings or {}).get("api_url") or "").strip() != (account.settings or {}).get(
        "api_url", "")
    untyped = [k for k in SENT_TO_API.get(channel, ()) if k in stored_secrets and k not in typed]
    if moved and untyped:  # else an admin could send the stored token to an address of their choosing
        raise ChannelAccountError(
            f"the API URL changed: type {', '.join(untyped)} again (a stored secret is never sent to a new address)"
        )
    new_settings = {
        k: str(v).strip() for k, v in (settings or {}).items() if k in fields.settings and str(v or "").strip()
    }
    missing = [f for f in fields.required if not (new_settings.get(f) or secrets.get(f))]
    if missing and enabled:
        raise ChannelAccountError(f"a {channel} account needs {', '.join(missing)}")
    changed_settings = sorted(
        k
        for k in set(new_settings) | set(account.settings or {})
        if new_settings.get(k) != (account.settings or {}).get(k)
    )
    changed_secrets = sorted(k for k in typed if stored_secrets.get(k) != typed[k])
    before = (account.name, account.channel, account.enabled)
    account.name, account.channel, account.enabled = name, channel, bool(enabled)
    account.settings = new_settings
    if created or changed_secrets or secrets != stored_secrets:
        account.credentials_encrypted = encrypt_credentials(current_app.config, secrets) if secrets else None
    db.session.flush()
    details: dict[str, Any] = {
        "name": name,
        "channel": channel,
        "enabled": bool(enabled),
        "settings_changed": changed_settings,
        "secrets_changed": changed_secrets,
    }
    if not created and before != (name, channel, bool(enabled)):
        details["was"] = {"name": before[0], "channel": before[1], "enabled": before[2]}
    record(
        actor, "channel_account.create" if created else "channel_account.update", "channel_account", account.id, details
    )
    db.session.commit()
    _senders_changed()
    return account


def delete_channel_account(account: ChannelAccount, *, actor: str) -> None:
    record(
        actor,
        "channel_account.delete",
        "channel_account",
        account.id,
        {"name": account.name, "channel": account.channel},
    )
    db.session.delete(account)
    db.session.commit()
    _senders_changed()


def enabled_account(channel: str) -> ChannelAccount | None:
    """The channel's account the senders use: the enabled one (the oldest, if several are enabled)."""
    return db.session.scalar(
        sa.select(ChannelAccount)
        .where(ChannelAccount.channel == channel, ChannelAccount.enabled.is_(True))
        .order_by(ChannelAccount.id)
        .limit(1)
    )


def _senders_changed() -> None:
    from app.outbox.senders import reset_senders

    reset_senders(current_app._get_current_object())  # type: ignore[attr-defined]
