"""The states of an outbox row and the moves between them, as data the code enforces.

Every change of ``OutboxMessage.state`` goes through :func:`check_move` (the model validates each assignment), and
every bulk UPDATE of states moves only rows in :func:`sources` of its target, so a row never takes a step this table
does not list. A refused move raises :class:`IllegalTransition` and is logged.

Pure Python: no Flask, no SQLAlchemy (the model and the dispatcher import it).
"""

from __future__ import annotations

import logging
from enum import StrEnum

log = logging.getLogger(__name__)


class OutboxState(StrEnum):
    HELD = "held"  # planned, but the contact rules found no moment yet (an operator or a replan moves it)
    SCHEDULED = "scheduled"  # waiting for ``scheduled_for``; the dispatcher claims it then
    CLAIMED = "claimed"  # a dispatch run holds it (lease: ``claimed_at``, owner: ``claimed_by``); nothing sent
    SENDING = "sending"  # the attempt is recorded; the message waits for a sending thread, or is being written
    DELIVERING = "delivering"  # past the checkpoint: the provider may have it (an email's final dot, a request)
    SENT = "sent"  # the provider has it
    DELIVERED = "delivered"
    READ = "read"
    FAILED = "failed"
    UNDELIVERED = "undelivered"
    UNKNOWN = "unknown"  # the worker died while sending; the provider is asked (reconciliation)
    REVIEW = "review"  # nobody can tell whether it went: a person decides
    CANCELLED = "cancelled"  # its case closed first
    SKIPPED = "skipped"  # no channel left (opted out, no address, not configured)
    MERGED = "merged"  # rides in another message of the same customer (consolidation)
    PAUSED = "paused"  # held while its case is paused by an operator


S = OutboxState

#: states a row is created in
INITIAL: frozenset[OutboxState] = frozenset({S.SCHEDULED, S.HELD})

#: from-state -> the states a row may move to from it. A move to the same state is no move and always allowed.
TRANSITIONS: dict[OutboxState, frozenset[OutboxState]] = {
    # waiting: claimed, moved, or settled by a late provider answer of an earlier attempt (the truth wins: a row
    # the provider has is ``sent``, so it is never sent again); escalation and payment rows are claimed as sending
    S.HELD: frozenset({S.SCHEDULED, S.PAUSED, S.CANCELLED, S.SKIPPED, S.SENT}),
    S.SCHEDULED: frozenset({S.CLAIMED, S.SENDING, S.HELD, S.PAUSED, S.CANCELLED, S.SKIPPED, S.MERGED, S.SENT}),
    S.PAUSED: frozenset({S.SCHEDULED, S.HELD, S.CANCELLED, S.SKIPPED, S.SENT}),
    # claimed: the checks at send time, then sending; a payment row's outcome may be known without a new charge
    S.CLAIMED: frozenset({S.SENDING, S.SCHEDULED, S.CANCELLED, S.PAUSED, S.SKIPPED, S.MERGED, S.FAILED, S.SENT,
                          S.UNKNOWN}),
    # in flight: the provider's answer, a checkpoint, a dead worker's lease, a status webhook ahead of us;
    # CLAIMED again: a synchronous failure moved it to its next channel (prepared again at once)
    S.SENDING: frozenset({S.DELIVERING, S.SENT, S.DELIVERED, S.READ, S.FAILED, S.UNDELIVERED, S.UNKNOWN, S.REVIEW,
                          S.SCHEDULED, S.CLAIMED, S.CANCELLED, S.PAUSED}),
    S.DELIVERING: frozenset({S.SENT, S.DELIVERED, S.READ, S.FAILED, S.UNDELIVERED, S.UNKNOWN, S.REVIEW, S.SENDING,
                             S.SCHEDULED, S.CLAIMED}),
    # settled by reconciliation, a status webhook or a person
    S.UNKNOWN: frozenset({S.SENT, S.DELIVERED, S.READ, S.FAILED, S.UNDELIVERED, S.SCHEDULED, S.REVIEW}),
    S.REVIEW: frozenset({S.SENT, S.DELIVERED, S.READ, S.FAILED, S.UNDELIVERED, S.SCHEDULED}),
    # statuses arrive out of order; the furthest wins (app.channels.base.DeliveryStatus.rank)
    S.SENT: frozenset({S.DELIVERED, S.READ, S.FAILED, S.UNDELIVERED}),
    S.FAILED: frozenset({S.DELIVERED, S.READ}),
    S.UNDELIVERED: frozenset({S.DELIVERED, S.READ}),
    S.DELIVERED: frozenset({S.READ}),
    S.READ: frozenset(),
    S.CANCELLED: frozenset(),
    S.SKIPPED: frozenset(),
    S.MERGED: frozenset(),
}

#: held by a dispatch run (or a dead one: the lease says which)
IN_FLIGHT: frozenset[OutboxState] = frozenset({S.CLAIMED, S.SENDING, S.DELIVERING})
#: past the checks and on their way: they count against the cadence caps as sent
ON_THE_WAY: frozenset[OutboxState] = frozenset({S.SENDING, S.DELIVERING})
#: the provider has it
SENT_STATES: frozenset[OutboxState] = frozenset({S.SENT, S.DELIVERED, S.READ})
#: not gone yet and not in anyone's hands: what a closed case cancels, an opt-out skips, a pause holds
WAITING: frozenset[OutboxState] = frozenset({S.SCHEDULED, S.HELD, S.PAUSED})
#: nothing will happen to the row any more
FINAL: frozenset[OutboxState] = frozenset(s for s, targets in TRANSITIONS.items() if not targets)


class IllegalTransition(RuntimeError):
    """An outbox row was asked to take a step the table does not allow."""

    def __init__(self, message_id: int | None, current: str, target: str) -> None:
        self.message_id, self.current, self.target = message_id, current, target
        super().__init__(f"outbox message {message_id if message_id is not None else '(new)'} may not move from "
                         f"{current!r} to {target!r}")


def may_move(current: str | None, target: str) -> bool:
    """Is ``current`` -> ``target`` a step of the table? ``current`` None: a new row (the table governs moves; the
    code creates rows in :data:`INITIAL`, tests and fixtures in whatever state they describe)."""
    if current is None or current == target:
        return True
    try:
        return OutboxState(target) in TRANSITIONS[OutboxState(current)]
    except (ValueError, KeyError):
        return False


def check_move(message_id: int | None, current: str | None, target: str) -> OutboxState:
    """``target`` as an :class:`OutboxState` when the row may move there from ``current``; else logged and raised."""
    try:
        state = OutboxState(target)
    except ValueError:
        log.error("outbox message %s: %r is not an outbox state", message_id, target)
        raise IllegalTransition(message_id, str(current), str(target)) from None
    if not may_move(current, state):
        log.error("outbox message %s: illegal move from %r to %r refused", message_id, current, target)
        raise IllegalTransition(message_id, str(current), str(target))
    return state


def sources(target: OutboxState, among: frozenset[OutboxState] | set[OutboxState] | None = None) -> tuple[str, ...]:
    """The states a row may move to ``target`` from (optionally only those ``among`` them), for the WHERE clause of
    a bulk UPDATE: ``.where(OutboxMessage.state.in_(sources(SENT)))``. Sorted: statements are cached by text."""
    found = [s for s, targets in TRANSITIONS.items() if target in targets and (among is None or s in among)]
    if not found:
        raise IllegalTransition(None, "|".join(sorted(among or ())), target)
    return tuple(sorted(s.value for s in found))
