"""What inbound webhooks do, once their signatures are checked. No HTTP here: views call these."""

from __future__ import annotations

import logging
from typing import Any

import sqlalchemy as sa
from flask import current_app

from app import inbox
from app.accounts.fresh import NMI_VERIFIERS, fresh
from app.accounts.gateway_accounts import ensure_env_account, gateway_for
from app.extensions import db
from app.gateways.base import Gateway, GatewayProtocolError, WebhookEvent, WebhookSignatureError, WebhookUnusable
from app.ingest.quarantine import storable_json
from app.models import GatewayAccount

log = logging.getLogger(__name__)

NMI_FAILURE_EVENTS = ("transaction.sale.failure",)


class HookRejected(Exception):
    """A webhook refused. ``str(exc)`` is what the sender is told (no account names, no internal errors: a forger
    learns nothing); ``why``, only for a correctly signed body, says in our own words what is wrong with it;
    ``detail`` is what the log says."""

    def __init__(self, message: str, status: int = 401, detail: str | None = None, why: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.detail = detail or message
        self.why = why


def is_failure_event(event_type: str) -> bool:
    return event_type in NMI_FAILURE_EVENTS or (event_type.startswith("recurring.") and "fail" in event_type)


def _verifiers() -> list[tuple[int, str, Gateway | Exception]]:
    """(account id, name, its gateway client or why it has none) of each enabled NMI account, kept per process while
    the accounts are unchanged (app.accounts.fresh): building them decrypts every account's secrets."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]

    def build() -> list[tuple[int, str, Gateway | Exception]]:
        ensure_env_account()
        accounts = db.session.scalars(
            sa.select(GatewayAccount).where(GatewayAccount.gateway == "nmi", GatewayAccount.enabled.is_(True))
            .order_by(GatewayAccount.id)
        ).all()
        built: list[tuple[int, str, Gateway | Exception]] = []
        for account in accounts:
            try:
                built.append((account.id, account.name, gateway_for(account)))
            except Exception as exc:  # a misconfigured account must not turn a forgery into a 500
                log.exception("NMI account %s cannot check webhooks", account.name)
                built.append((account.id, account.name, exc))
        return built

    def stamp() -> tuple[Any, ...] | None:
        """The accounts table's stamp, and the environment's NMI settings (build() keeps its account in step)."""
        config, table = app.config, GatewayAccount.__table__
        try:
            with db.engine.connect() as conn:
                row = conn.execute(sa.select(sa.func.count(), sa.func.max(table.c.id),
                                             sa.func.max(table.c.updated_at))).one()
        except sa.exc.SQLAlchemyError:
            return None
        return (*(str(v) for v in row), *(config.get(k) for k in ("NMI_SECURITY_KEY", "NMI_WEBHOOK_SIGNING_KEY",
                                                                 "NMI_API_URL")))

    return fresh(app, NMI_VERIFIERS, stamp, build)


def prepare_nmi_verifiers() -> None:
    """Before the first webhook (a web process starting: app.web.hooks.prepare): the verifiers built, the currency
    data a failure's amount is read with loaded, and the phone number patterns its customer's number is read with
    kept once compiled (phonenumbers otherwise compiles them again and again: they outnumber the re module's
    cache)."""
    import phonenumbers

    from app.gateways.nmi import currency_exponent

    phonenumbers.enable_pattern_cache()
    _verifiers()
    currency_exponent("USD")


def _verify_with_some_account(headers: dict[str, str], body: bytes) -> tuple[int, WebhookEvent]:
    """(the id of the account whose key signed it, the event)."""
    verifiers = _verifiers()
    problems: list[str] = [] if verifiers else ["no NMI account is enabled"]
    for account_id, name, gateway in verifiers:
        if isinstance(gateway, Exception):
            problems.append(f"{name}: {type(gateway).__name__}")
            continue
        try:
            return account_id, gateway.verify_webhook(headers, body)
        except WebhookSignatureError as exc:
            problems.append(f"{name}: {exc}")
        except WebhookUnusable as exc:  # the signature is this account's: the body itself is wrong, and it says why
            raise HookRejected("payload not understood", 400, detail=f"{name}: {exc} ({exc.detail or '-'})",
                               why=str(exc)) from None
        except GatewayProtocolError as exc:  # the signature is this account's: the body itself is wrong
            raise HookRejected("payload not understood", 400, detail=f"{name}: {exc}") from None
        except Exception as exc:  # a misconfigured account must not turn a forgery into a 500
            log.exception("NMI account %s could not check a webhook", name)
            problems.append(f"{name}: {type(exc).__name__}")
    raise HookRejected("signature not accepted", 401, detail="; ".join(problems))


def handle_nmi_webhook(headers: dict[str, str], body: bytes) -> dict[str, Any]:
    """Verify, store and answer: a worker applies it (:mod:`app.inbox`). A re-delivery is answered as one."""
    account_id, event = _verify_with_some_account(headers, body)
    # a lone surrogate in a JSON body cannot be stored as it is
    row_id, duplicate = inbox.accept("nmi", event.event_id, event.event_type, storable_json(dict(event.raw), body),
                                     account_id=account_id)
    return {"ok": True, "duplicate": True} if duplicate else {"ok": True, "received": row_id}
