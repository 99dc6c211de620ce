"""Gateway accounts: building a client for an account from its (decrypted) credentials."""

from __future__ import annotations

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.exc import IntegrityError

from app.accounts.fresh import NMI_VERIFIERS, forget
from app.accounts.secrets import decrypt_credentials, encrypt_credentials
from app.audit import record
from app.extensions import db
from app.gateways.base import Gateway
from app.models import GatewayAccount

ENV_ACCOUNT_NAME = "nmi-default"


class AccountError(ValueError):
    pass


def gateway_for(account: GatewayAccount) -> Gateway:
    config = current_app.config
    creds = decrypt_credentials(config, account.credentials_encrypted)
    if account.gateway == "nmi":
        from app.gateways.nmi import NmiGateway

        if not creds.get("security_key"):
            raise AccountError(f"gateway account {account.name!r} has no NMI security key")
        options = dict(dict(account.settings or {}).get("client", {}))
        if isinstance(options.get("timeout"), list):  # JSON has no tuples: (connect, read) seconds
            options["timeout"] = tuple(options["timeout"])
        return NmiGateway(
            security_key=creds["security_key"],
            api_url=account.api_url or config["NMI_API_URL"],
            webhook_signing_key=creds.get("webhook_signing_key"),
            **options,
        )
    raise AccountError(f"gateway {account.gateway!r} is not supported yet")


def save_account(
    name: str,
    gateway: str,
    *,
    credentials: dict[str, str],
    api_url: str | None = None,
    actor: str = "system",
    settings: dict | None = None,
) -> GatewayAccount:
    account = db.session.scalar(sa.select(GatewayAccount).where(GatewayAccount.name == name))
    created = account is None
    if account is None:
        account = GatewayAccount(name=name, gateway=gateway)
        db.session.add(account)
    account.api_url = api_url
    account.credentials_encrypted = encrypt_credentials(current_app.config, credentials)
    if settings is not None:
        account.settings = settings
    db.session.flush()
    forget(current_app._get_current_object(), NMI_VERIFIERS)  # type: ignore[attr-defined]
    # the audit entry names which secrets changed, never their values
    record(
        actor,
        "gateway_account.create" if created else "gateway_account.update",
        "gateway_account",
        account.id,
        {"name": name, "gateway": gateway, "api_url": api_url, "secrets": sorted(credentials)},
    )
    return account


def ensure_env_account() -> GatewayAccount | None:
    """The default NMI account from the environment (NMI_SECURITY_KEY), kept in step with it."""
    config = current_app.config
    key = config.get("NMI_SECURITY_KEY")
    if not key:
        return None
    account = db.session.scalar(sa.select(GatewayAccount).where(GatewayAccount.name == ENV_ACCOUNT_NAME))
    creds = {"security_key": key}
    if config.get("NMI_WEBHOOK_SIGNING_KEY"):
        creds["webhook_signing_key"] = config["NMI_WEBHOOK_SIGNING_KEY"]
    if (
        account is not None
        and decrypt_credentials(config, account.credentials_encrypted) == creds
        and account.api_url == config["NMI_API_URL"]
    ):
        return account
    try:
        account = save_account(
            ENV_ACCOUNT_NAME, "nmi", credentials=creds, api_url=config["NMI_API_URL"], actor="environment"
        )
        db.session.commit()
    except IntegrityError:
        # requests that arrive together on a new server each find no account and create it: one wins, the
        # others use the one it made (from the same environment)
        db.session.rollback()
        account = db.session.scalar(sa.select(GatewayAccount).where(GatewayAccount.name == ENV_ACCOUNT_NAME))
        if account is None:
            raise
    return account
