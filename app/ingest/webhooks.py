"""What inbound webhooks do, once their signatures are checked. No HTTP here: views call these."""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from app.accounts.gateway_accounts import ensure_env_account, gateway_for
from app.extensions import db
from app.gateways.base import GatewayProtocolError, WebhookEvent, WebhookSignatureError, WebhookUnusable
from app.ingest.quarantine import WEBHOOK, storable
from app.ingest.transactions import hand_to_planning, ingest_context, ingest_records
from app.models import GatewayAccount, InboundEvent
from app.models.types import utcnow

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


def _verify_with_some_account(headers: dict[str, str], body: bytes) -> tuple[GatewayAccount, WebhookEvent]:
    ensure_env_account()
    accounts = db.session.scalars(
        sa.select(GatewayAccount).where(GatewayAccount.gateway == "nmi", GatewayAccount.enabled.is_(True))
    ).all()
    problems: list[str] = [] if accounts else ["no NMI account is enabled"]
    for account in accounts:
        try:
            gateway = gateway_for(account)
            return account, gateway.verify_webhook(headers, body)
        except WebhookSignatureError as exc:
            problems.append(f"{account.name}: {exc}")
        except WebhookUnusable as exc:  # the signature is this account's: the body itself is wrong, and it says why
            raise HookRejected("payload not understood", 400, detail=f"{account.name}: {exc} ({exc.detail or '-'})",
                               why=str(exc)) from None
        except GatewayProtocolError as exc:  # the signature is this account's: the body itself is wrong
            raise HookRejected("payload not understood", 400, detail=f"{account.name}: {exc}") from None
        except Exception as exc:  # a misconfigured account must not turn a forgery into a 500
            log.exception("NMI account %s could not check a webhook", account.name)
            problems.append(f"{account.name}: {type(exc).__name__}")
    raise HookRejected("signature not accepted", 401, detail="; ".join(problems))


def handle_nmi_webhook(headers: dict[str, str], body: bytes) -> dict[str, Any]:
    account, event = _verify_with_some_account(headers, body)
    already = db.session.scalar(
        sa.select(InboundEvent.id).where(InboundEvent.provider == "nmi", InboundEvent.event_id == event.event_id)
    )
    if already is not None:
        return {"ok": True, "duplicate": True}
    opened: list[int] = []
    joined = own = quarantined = 0
    if is_failure_event(event.event_type) and event.transaction is not None:
        # checked like a fetched record: a refused one is quarantined, and the event still counts as received
        record = replace(event.transaction, raw=storable(dict(event.transaction.raw)))
        result = ingest_records([record], ingest_context(account), source=WEBHOOK)
        opened, joined, own, quarantined = result.case_ids, result.joined, result.own_charges, result.quarantined
    try:
        db.session.add(
            InboundEvent(
                provider="nmi",
                event_id=event.event_id[:128],
                event_type=event.event_type[:64],
                payload=storable(dict(event.raw)),  # a lone surrogate in a JSON body cannot be stored as it is
                processed_at=utcnow(),
            )
        )
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        return {"ok": True, "duplicate": True}
    if opened:
        hand_to_planning(opened)
    answer: dict[str, Any] = {"ok": True, "cases_opened": len(opened), "joined_a_case": joined, "own_charges": own}
    if quarantined:
        answer["quarantined"] = quarantined
    return answer
