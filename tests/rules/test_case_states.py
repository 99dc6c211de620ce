import pytest

from rules.case_states import ALLOWED, TERMINAL, CaseState, InvalidTransition, check_transition


def test_the_happy_path():
    assert check_transition("open", "contacting") is CaseState.CONTACTING
    assert check_transition("contacting", "recovered") is CaseState.RECOVERED


@pytest.mark.parametrize("closed", sorted(TERMINAL))
def test_a_closed_case_stays_closed(closed):
    for state in CaseState:
        with pytest.raises(InvalidTransition, match="it is closed"):
            check_transition(closed, state)


def test_escalation_can_go_back_to_contacting_but_not_to_open():
    assert check_transition("escalated", "contacting") is CaseState.CONTACTING
    with pytest.raises(InvalidTransition, match="cannot become open"):
        check_transition("escalated", "open")


def test_nonsense_states_are_refused():
    with pytest.raises(InvalidTransition):
        check_transition("open", "paid-ish")


def test_every_state_has_rules():
    assert set(ALLOWED) == set(CaseState)
