"""The life of a recovery case: open → contacting → recovered | expired | cancelled, with escalation on the way;
and what an operator may do to a case in each state (pause and resume are not states: see ACTIONS)."""

from __future__ import annotations

from enum import StrEnum


class CaseState(StrEnum):
    OPEN = "open"
    CONTACTING = "contacting"
    ESCALATED = "escalated"
    RECOVERED = "recovered"
    EXPIRED = "expired"
    CANCELLED = "cancelled"


#: closed for good: nothing is sent, nothing is charged, no action applies
TERMINAL = frozenset({CaseState.RECOVERED, CaseState.EXPIRED, CaseState.CANCELLED})
#: still being worked on (open, contacting, escalated): what the rest of Recoup calls an open case, the one group
#: to test a state against (``case.state in ACTIVE``; a StrEnum member equals its text)
ACTIVE = frozenset(CaseState) - TERMINAL

ALLOWED: dict[CaseState, frozenset[CaseState]] = {
    CaseState.OPEN: frozenset({CaseState.CONTACTING, CaseState.ESCALATED} | TERMINAL),
    CaseState.CONTACTING: frozenset({CaseState.ESCALATED} | TERMINAL),
    CaseState.ESCALATED: frozenset({CaseState.CONTACTING} | TERMINAL),
    CaseState.RECOVERED: frozenset(),
    CaseState.EXPIRED: frozenset(),
    CaseState.CANCELLED: frozenset(),
}


class InvalidTransition(ValueError):
    def __init__(self, current: str, wanted: str) -> None:
        allowed = ", ".join(sorted(ALLOWED.get(CaseState(current), frozenset()))) or "nothing (it is closed)"
        super().__init__(f"a case that is {current} cannot become {wanted}; it can become {allowed}")
        self.current = current
        self.wanted = wanted


def check_transition(current: str, wanted: str) -> CaseState:
    """The new state, if a case in ``current`` may move to ``wanted``; else :class:`InvalidTransition`."""
    try:
        here, there = CaseState(current), CaseState(wanted)
    except ValueError:
        raise InvalidTransition(current, wanted) from None
    if there not in ALLOWED[here]:
        raise InvalidTransition(current, wanted)
    return there


class CaseAction(StrEnum):
    """What an operator may do to a case (admin Cases)."""

    SEND_NOW = "send_now"
    PAUSE = "pause"
    RESUME = "resume"
    PAYMENT_LINK = "payment_link"
    PAID_ELSEWHERE = "paid_elsewhere"
    CANCEL = "cancel"


#: each action: the states it applies to, and whether the case must be paused (True), must not be (False), or
#: either (None). Pausing is not a state: a paused case keeps its state, can still be paid and still covers its
#: order; only contact stops (``RecoveryCase.paused_at``).
ACTIONS: dict[CaseAction, tuple[frozenset[CaseState], bool | None]] = {
    CaseAction.SEND_NOW: (ACTIVE, False),
    CaseAction.PAUSE: (ACTIVE, False),
    CaseAction.RESUME: (ACTIVE, True),
    CaseAction.PAYMENT_LINK: (ACTIVE, None),
    CaseAction.PAID_ELSEWHERE: (ACTIVE, None),
    CaseAction.CANCEL: (ACTIVE, None),
}


def refusal(action: str, state: str, paused: bool) -> str | None:
    """Why ``action`` cannot be done to a case in ``state`` (paused or not): ``closed``, ``paused``,
    ``not_paused``; None when it can."""
    states, must_be_paused = ACTIONS[CaseAction(action)]
    if CaseState(state) not in states:
        return "closed"
    if must_be_paused is not None and paused != must_be_paused:
        return "paused" if paused else "not_paused"
    return None


def allowed_actions(state: str, paused: bool) -> frozenset[CaseAction]:
    return frozenset(a for a in CaseAction if refusal(a, state, paused) is None)
