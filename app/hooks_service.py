"""What inbound webhooks do, once their signatures are checked. No HTTP here: views call these."""

from __future__ import annotations

import logging
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from app.extensions import db
from app.gateway_accounts import ensure_env_account, gateway_for
from app.gateways.base import WebhookEvent, WebhookSignatureError
from app.ingest import hand_to_planning, ingest_context, ingest_records
from app.models import GatewayAccount, InboundEvent
from app.models.types import utcnow

log = logging.getLogger(__name__)

NMI_FAILURE_EVENTS = ("transaction.sale.failure",)


class HookRejected(Exception):
    def __init__(self, message: str, status: int = 401) -> None:
        super().__init__(message)
        self.status = status


def is_failure_event(event_type: str) -> bool:
    return event_type in NMI_FAILURE_EVENTS or (event_type.startswith("recurring.") and "fail" in event_type)


def _verify_with_some_account(headers: dict[str, str], body: bytes) -> tuple[GatewayAccount, WebhookEvent]:
    ensure_env_account()
    accounts = db.session.scalars(
        sa.select(GatewayAccount).where(GatewayAccount.gateway == "nmi", GatewayAccount.enabled.is_(True))
    ).all()
    last_error = "no NMI account has a webhook signing key"
    for account in accounts:
        try:
            gateway = gateway_for(account)
            return account, gateway.verify_webhook(headers, body)
        except WebhookSignatureError as exc:
            last_error = str(exc)
        except Exception as exc:  # a misconfigured account must not turn a forgery into a 500
            last_error = f"account {account.name}: {exc}"
    raise HookRejected(f"signature not accepted: {last_error}")


def handle_nmi_webhook(headers: dict[str, str], body: bytes) -> dict[str, Any]:
    account, event = _verify_with_some_account(headers, body)
    already = db.session.scalar(
        sa.select(InboundEvent.id).where(InboundEvent.provider == "nmi", InboundEvent.event_id == event.event_id)
    )
    if already is not None:
        return {"ok": True, "duplicate": True}
    opened: list[int] = []
    joined = own = 0
    if is_failure_event(event.event_type) and event.transaction is not None:
        result = ingest_records([event.transaction], ingest_context(account))
        opened, joined, own = result.case_ids, result.joined, result.own_charges
    try:
        db.session.add(
            InboundEvent(
                provider="nmi",
                event_id=event.event_id[:128],
                event_type=event.event_type[:64],
                payload=dict(event.raw),
                processed_at=utcnow(),
            )
        )
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        return {"ok": True, "duplicate": True}
    if opened:
        hand_to_planning(opened)
    return {"ok": True, "cases_opened": len(opened), "joined_a_case": joined, "own_charges": own}
