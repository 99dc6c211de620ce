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


def test_operators_act_on_open_cases_only():
    from rules.case_states import CaseAction, allowed_actions, refusal

    assert allowed_actions("contacting", paused=False) == set(CaseAction) - {CaseAction.RESUME}
    assert allowed_actions("escalated", paused=True) == {CaseAction.RESUME, CaseAction.PAYMENT_LINK,
                                                        CaseAction.PAID_ELSEWHERE, CaseAction.CANCEL}
    for closed in TERMINAL:
        assert allowed_actions(closed, paused=False) == frozenset()
        assert refusal("paid_elsewhere", closed, paused=False) == "closed"
    assert refusal("pause", "open", paused=True) == "paused"
    assert refusal("resume", "open", paused=False) == "not_paused"
    assert refusal("send_now", "open", paused=True) == "paused"
