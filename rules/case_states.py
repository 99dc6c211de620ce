"""The life of a recovery case: open → contacting → recovered | expired | cancelled, with escalation on the way."""

from __future__ import annotations

from enum import StrEnum


class CaseState(StrEnum):
    OPEN = "open"
    CONTACTING = "contacting"
    ESCALATED = "escalated"
    RECOVERED = "recovered"
    EXPIRED = "expired"
    CANCELLED = "cancelled"


TERMINAL = frozenset({CaseState.RECOVERED, CaseState.EXPIRED, CaseState.CANCELLED})
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
