"""Preparing a batch: the claimed rows checked, rendered and moved to ``sending`` in one transaction."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import joinedload, load_only

from app.extensions import db
from app.models import Customer, OutboxMessage, RecoveryCase, Transaction
from app.outbox.batch import BatchRows, Ready, add_event, rows_written_together
from app.outbox.check import SendFacts, deferred_until, next_usable_channel
from app.outbox.compose import compose
from app.outbox.consent import opted_out_channels_of
from app.outbox.consolidate import MergedCase, customers_with_siblings, merge_siblings
from app.outbox.states import OutboxState as S
from app.outbox.states import sources
from app.payments.receipts import is_receipt
from rules.case_states import ACTIVE
from rules.vocabulary import Channel

#: What a batch reads of a case's transaction and of a customer: the columns the checks and the message use (a
#: column left out is still read when something asks for it, one row at a time). Every column of a wide row costs
#: the driver a field description and a conversion, thousands of times a minute.
_TRANSACTION_READ = (Transaction.gateway_transaction_id, Transaction.failed_at, Transaction.product_type,
                     Transaction.decline_reason, Transaction.order_description)
_CUSTOMER_READ = (Customer.first_name, Customer.last_name, Customer.email, Customer.phone_e164, Customer.country,
                  Customer.region, Customer.postal_code, Customer.city, Customer.timezone, Customer.timezone_candidates,
                  Customer.timezone_explicit, Customer.locale)


def prepare_batch(
    ids: list[int], now: datetime, *, token: str | None, senders: dict[str, Any]
) -> tuple[list[Ready], dict[int, str]]:
    """Check, render and move to ``sending`` the claimed rows ``ids`` (in that order), in one transaction.
    Returns the messages ready to send and the outcome of the others (cancelled, skipped, deferred, gone)."""
    with rows_written_together() as rows:
        return _prepare_rows(ids, now, token, senders, rows)


def _prepare_rows(
    ids: list[int], now: datetime, token: str | None, senders: dict[str, Any], rows_added: BatchRows
) -> tuple[list[Ready], dict[int, str]]:
    finished: dict[int, str] = {}
    ready: list[Ready] = []
    rows = {
        m.id: m
        for m in db.session.scalars(
            sa.select(OutboxMessage).where(OutboxMessage.id.in_(ids)).order_by(OutboxMessage.id)
            .with_for_update().execution_options(populate_existing=True)
        )
    }
    mine: list[OutboxMessage] = []
    for mid in ids:
        message = rows.get(mid)
        if message is None or message.state != S.CLAIMED or (token is not None and message.claimed_by != token):
            finished[mid] = "gone"
        else:
            mine.append(message)
    if not mine:
        db.session.rollback()
        return ready, finished
    case_ids = {m.case_id for m in mine if m.case_id is not None}
    cases = {
        c.id: c
        for c in db.session.scalars(
            sa.select(RecoveryCase)
            .where(RecoveryCase.id.in_(case_ids))
            .options(joinedload(RecoveryCase.transaction).load_only(*_TRANSACTION_READ))
        )
    } if case_ids else {}
    customer_ids = {m.customer_id for m in mine if m.customer_id is not None}
    customers = {
        c.id: c
        for c in db.session.scalars(
            sa.select(Customer).where(Customer.id.in_(customer_ids)).options(load_only(*_CUSTOMER_READ))
        )
    } if customer_ids else {}
    blocked = opted_out_channels_of(customer_ids)
    facts = SendFacts(now, customer_ids)
    with_siblings = customers_with_siblings(mine, now)
    pending = {m.id: m for m in mine if m.customer_id in with_siblings}  # not yet prepared: may be merged
    for message in mine:
        if message.state == S.MERGED:  # into a message of this batch prepared before it
            finished[message.id] = "merged"
            continue
        pending.pop(message.id, None)
        case = cases.get(message.case_id) if message.case_id is not None else None
        customer = customers.get(message.customer_id) if message.customer_id is not None else None
        outcome = _prepare_one(message, case, customer, blocked.get(message.customer_id or 0, set()), senders,
                               facts, with_siblings, pending)
        if isinstance(outcome, Ready):
            ready.append(outcome)
            if not is_receipt(message):  # a receipt counts against no cadence cap
                facts.record_send(message.customer_id, outcome.channel)
        else:
            finished[message.id] = outcome
    if ready:  # one statement, not an UPDATE per row (each is a round trip the whole run waits for)
        db.session.execute(
            sa.update(OutboxMessage)
            .where(OutboxMessage.id.in_([r.message_id for r in ready]),
                   OutboxMessage.state.in_(sources(S.SENDING, among={S.CLAIMED})))
            .values(state=S.SENDING, attempts=OutboxMessage.attempts + 1, claimed_at=facts.started)
            .execution_options(synchronize_session=False)
        )
    rows_added.write()
    db.session.commit()
    return ready, finished


def _prepare_one(
    message: OutboxMessage,
    case: RecoveryCase | None,
    customer: Customer | None,
    blocked: set[str],
    senders: dict[str, Any],
    facts: SendFacts,
    with_siblings: set[int],
    pending: dict[int, OutboxMessage],
) -> Ready | str:
    now = facts.now
    if is_receipt(message):  # a payment's receipt goes whatever its case's state, opt-outs and contact rules
        return _ready(message, None, customer, senders, facts, set())
    if case is not None and case.state not in ACTIVE:
        message.state = S.CANCELLED
        add_event(message, "cancelled", {"why": f"case is {case.state}"})
        return "cancelled"
    if case is not None and case.paused_at is not None:  # claimed just before the pause: held with the others
        message.state, message.claimed_by = S.PAUSED, None
        add_event(message, "paused", {"why": f"case paused by {case.paused_by or '?'}"})
        return "paused"
    channel = next_usable_channel(message, customer, senders, blocked)
    if channel is None:
        message.state = S.SKIPPED
        add_event(message, "skipped", {"why": message.error_text or "no channel left"})
        return "skipped"
    deferred = deferred_until(message, customer, channel, facts)
    if deferred is not None:
        message.state = S.SCHEDULED
        message.claimed_by = None
        message.scheduled_for = deferred.until
        message.deferred_by = list(deferred.reasons)
        add_event(message, "deferred", deferred.event(channel, message.contact_override))
        return "deferred"
    merged: list[MergedCase] = []
    if message.customer_id in with_siblings or message.attempts:  # a retry lists what its first attempt carried
        merged = merge_siblings(message, case, channel, now, pending)
    return _ready(message, case, customer, senders, facts, blocked, channel, merged)


def _ready(
    message: OutboxMessage,
    case: RecoveryCase | None,
    customer: Customer | None,
    senders: dict[str, Any],
    facts: SendFacts,
    blocked: set[str],
    channel: str | None = None,
    merged: list[MergedCase] | None = None,
) -> Ready | str:
    """The message composed and its attempt recorded: ready for a sending thread (its state moves with the batch's)."""
    if channel is None:
        channel = next_usable_channel(message, customer, senders, blocked)
        if channel is None:
            message.state = S.SKIPPED
            add_event(message, "skipped", {"why": message.error_text or "no channel left"})
            return "skipped"
    outbound = compose(message, case, customer, channel, merged)
    # state, attempts and lease are set for the whole batch in one statement (prepare_batch)
    attempt: dict[str, Any] = {"channel": channel, "to": outbound.to, "n": message.attempts + 1,
                               "started_at": facts.started.isoformat(), "by": message.claimed_by,
                               "checked_at": facts.now.isoformat()}  # the business time the contact rules saw
    if customer is not None and not is_receipt(message):
        from app.recovery.planning import customer_zones  # as app.outbox.check imports it

        # the zones the contact rules fitted this send into (the customer's place may change later: a new address)
        attempt["zones"] = list(customer_zones(customer))
    if message.contact_override:  # what the contact rules lifted for this send, and who said so
        attempt["override"] = message.contact_override
    if channel != Channel.EMAIL:
        # its sending thread commits a checkpoint (``delivering``) before the request: a row a dead worker left in
        # ``sending`` with this mark never reached the provider (app.outbox.reconcile.reclaim_stale)
        attempt["checkpoint"] = True
    if channel == Channel.SMS:
        attempt["body"] = outbound.text
        attempt["from"] = getattr(senders[channel], "from_number", None)
    add_event(message, "attempt", attempt)
    return Ready(message.id, message.claimed_by, case.id if case is not None else None, channel, outbound)
