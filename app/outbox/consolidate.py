"""Several open cases of one customer due within ``CONSOLIDATE_WINDOW_HOURS`` go as one email or SMS listing the
open amounts; the other rows become ``merged``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from flask import current_app

from app.extensions import db
from app.models import MessageEvent, OutboxMessage, RecoveryCase
from app.outbox.batch import add_event, add_event_for, payment_link
from app.outbox.settings import setting
from app.outbox.states import OutboxState as S
from app.outbox.states import sources
from rules.case_states import ACTIVE
from rules.vocabulary import CHANNELS, Channel


@dataclass(frozen=True)
class MergedCase:
    case_id: int
    message_id: int
    amount: str
    pay_url: str


def customers_with_siblings(messages: list[OutboxMessage], now: datetime) -> set[int]:
    """The customers of ``messages`` (email or SMS) who have another open case's reminder due within the
    consolidation window: only their messages need :func:`merge_siblings`. One query for a batch."""
    window = timedelta(hours=setting("CONSOLIDATE_WINDOW_HOURS"))
    customer_ids = {m.customer_id for m in messages if m.customer_id is not None and m.case_id is not None}
    if window <= timedelta(0) or not customer_ids:
        return set()
    ours = [m.id for m in messages]
    rows = db.session.execute(
        sa.select(OutboxMessage.customer_id, OutboxMessage.case_id)
        .join(RecoveryCase, RecoveryCase.id == OutboxMessage.case_id)
        .where(OutboxMessage.customer_id.in_(customer_ids), OutboxMessage.state == S.SCHEDULED,
               OutboxMessage.id.not_in(ours), OutboxMessage.scheduled_for <= now + window,
               OutboxMessage.channel.in_(CHANNELS), RecoveryCase.state.in_(ACTIVE))
    ).all()
    cases_of: dict[int, set[int]] = {}
    for m in messages:
        if m.customer_id is not None and m.case_id is not None:
            cases_of.setdefault(m.customer_id, set()).add(m.case_id)
    # another case's row: the message's own case may have several rows scheduled (later steps), which is not it;
    # and customers with several cases' rows in this batch (due together, claimed together)
    return {cid for cid, case_id in rows if case_id not in cases_of.get(cid, set()) or len(cases_of[cid]) > 1} | {
        cid for cid, ids in cases_of.items() if len(ids) > 1
    }


def merge_siblings(
    message: OutboxMessage,
    case: RecoveryCase | None,
    channel: str,
    now: datetime,
    batch: dict[int, OutboxMessage] | None = None,
) -> list[MergedCase]:
    """Other open cases of this customer with a reminder due within the window ride along in this email or SMS
    (a WhatsApp template cannot list them); their rows become ``merged``: rows still scheduled, and rows claimed
    in this same batch and not yet prepared (``batch``; due together, claimed together). Returns every case this
    message carries, including those merged on an earlier attempt (a retry lists them again)."""
    if channel not in (Channel.EMAIL, Channel.SMS) or case is None or message.customer_id is None:
        return []
    window = timedelta(hours=setting("CONSOLIDATE_WINDOW_HOURS"))
    if window <= timedelta(0):
        return []
    carried: dict[int, int] = {}  # case id -> the merged row
    for event in db.session.scalars(
        sa.select(MessageEvent).where(MessageEvent.message_id == message.id, MessageEvent.kind == "consolidated")
    ):
        payload = event.provider_payload or {}
        carried.update(zip(payload.get("cases") or [], payload.get("messages") or [], strict=False))
    fresh: dict[int, int] = {}
    rows = db.session.execute(
        sa.select(OutboxMessage.id, OutboxMessage.case_id)
        .join(RecoveryCase, RecoveryCase.id == OutboxMessage.case_id)
        .where(OutboxMessage.customer_id == message.customer_id, OutboxMessage.state == S.SCHEDULED,
               OutboxMessage.case_id != case.id, OutboxMessage.scheduled_for <= now + window,
               OutboxMessage.channel.in_(CHANNELS), RecoveryCase.state.in_(ACTIVE))
        .order_by(OutboxMessage.scheduled_for, OutboxMessage.id)
    ).all()
    for other in list((batch or {}).values()):
        if other.customer_id != message.customer_id or other.case_id in (None, case.id) or other is message:
            continue
        other_case = db.session.get(RecoveryCase, other.case_id)
        if other_case is None or other_case.state not in ACTIVE or other_case.paused_at is not None:
            continue
        other.state, other.claimed_by = S.MERGED, None
        add_event(other, "merged", {"into": message.id, "channel": channel})
        del batch[other.id]  # type: ignore[index]
        if other.case_id not in carried:
            fresh.setdefault(other.case_id, other.id)  # type: ignore[arg-type]
    for other_id, other_case_id in rows:
        changed = db.session.execute(
            sa.update(OutboxMessage)
            .where(OutboxMessage.id == other_id, OutboxMessage.state.in_(sources(S.MERGED, among={S.SCHEDULED})))
            .values(state=S.MERGED)
            .execution_options(synchronize_session=False)
        ).rowcount
        if changed:
            add_event_for(other_id, "merged", {"into": message.id, "channel": channel})
            if other_case_id not in carried:
                fresh.setdefault(other_case_id, other_id)
    if fresh:
        add_event(message, "consolidated", {"cases": list(fresh), "messages": list(fresh.values())})
    from app.payments.money import format_minor

    base = current_app.config["PUBLIC_BASE_URL"].rstrip("/")
    merged: list[MergedCase] = []
    for case_id, row_id in {**carried, **fresh}.items():
        other = db.session.get(RecoveryCase, case_id)
        if other is None or other.state not in ACTIVE:
            continue  # paid (or closed) since: nothing to list
        token = payment_link(other, current_app.config["SECRET_KEY"], message.id)
        amount = format_minor(other.amount_due_minor, other.currency, message.locale or "en_US")
        merged.append(MergedCase(case_id, row_id, amount, f"{base}/pay/{token}"))
    return merged


#: the block a consolidated reminder adds, in the customer's language (heading, link text)
_OTHER_OPEN_PAYMENTS = {"en": ("You also have other open payments:", "pay"),
                        "es": ("También tiene otros pagos pendientes:", "pagar")}


def with_merged(
    text: str | None, html: str | None, merged: list[MergedCase], locale: str | None
) -> tuple[str | None, str | None]:
    if not merged:
        return text, html
    from app.messages.default_templates import language_of

    heading, pay = _OTHER_OPEN_PAYMENTS.get(language_of(locale), _OTHER_OPEN_PAYMENTS["en"])
    lines = "\n".join(f"- {m.amount}: {m.pay_url}" for m in merged)
    text = f"{text or ''}\n\n{heading}\n{lines}"
    if html:
        from markupsafe import escape

        items = "".join(f'<li>{escape(m.amount)}: <a href="{escape(m.pay_url)}">{pay}</a></li>' for m in merged)
        block = f"<p>{escape(heading)}</p><ul>{items}</ul>"
        html = html.replace("</body>", block + "</body>") if "</body>" in html else html + block
    return text, html
