import pytest

from app.recovery.cases import move_case, open_case
from rules.case_states import InvalidTransition
from tests.builders import make_transaction


def test_one_case_per_failed_payment_with_its_history(db):
    tx = make_transaction()
    case, created = open_case(tx)
    again, created_again = open_case(tx)
    assert created and not created_again and again.id == case.id
    move_case(case, "contacting", reason="first message sent")
    move_case(case, "recovered", reason="paid via link", actor="customer")
    db.session.commit()
    assert [(t.from_state, t.to_state) for t in case.transitions] == [
        (None, "open"),
        ("open", "contacting"),
        ("contacting", "recovered"),
    ]
    assert case.closed_at is not None
    with pytest.raises(InvalidTransition):
        move_case(case, "contacting", reason="too late")
