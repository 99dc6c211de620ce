"""The outbox state machine is a table the code enforces: a move it does not list is refused, bulk moves only take
rows from the states the table allows, and no code in app/ or admin/ spells a state as a bare string."""

from __future__ import annotations

import ast
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from app.models import OutboxMessage
from app.outbox.states import (
    FINAL,
    INITIAL,
    TRANSITIONS,
    IllegalTransition,
    OutboxState,
    may_move,
    sources,
)
from tests.builders import make_message

S = OutboxState
ROOT = Path(__file__).resolve().parents[3]
NOW = datetime(2026, 11, 27, 15, 0, tzinfo=UTC)


def test_an_illegal_move_is_refused_logged_and_leaves_the_row_as_it_was(db, caplog):
    message = make_message(state=S.SCHEDULED)
    db.session.commit()
    message.state = S.SENT  # a late answer of an earlier attempt may settle a waiting row: allowed
    db.session.commit()
    with caplog.at_level(logging.ERROR, logger="app.outbox.states"), pytest.raises(IllegalTransition) as refused:
        message.state = S.SCHEDULED  # a sent message is never sent again
    assert (refused.value.message_id, refused.value.current, refused.value.target) == (message.id, "sent", "scheduled")
    assert f"outbox message {message.id} may not move from 'sent' to 'scheduled'" in str(refused.value)
    assert any(str(message.id) in r.getMessage() and "illegal" in r.getMessage() for r in caplog.records)
    db.session.rollback()
    assert db.session.get(OutboxMessage, message.id).state == "sent"


@pytest.mark.parametrize("final", sorted(FINAL))
def test_nothing_leaves_a_final_state(db, final):
    message = make_message(state=final)
    db.session.commit()
    for target in OutboxState:
        if target != final:
            with pytest.raises(IllegalTransition):
                message.state = target


def test_a_state_that_is_no_state_is_refused(db):
    message = make_message()
    with pytest.raises(IllegalTransition):
        message.state = "queued"


def test_the_table_covers_every_state_and_every_state_is_reachable():
    assert set(TRANSITIONS) == set(OutboxState)
    seen, todo = set(INITIAL), list(INITIAL)
    while todo:
        for nxt in TRANSITIONS[todo.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    assert seen == set(OutboxState)
    assert FINAL == {S.READ, S.CANCELLED, S.SKIPPED, S.MERGED}
    # what exactly-once rests on: nothing sent goes back to waiting or to a worker
    for sent in (S.SENT, S.DELIVERED, S.READ):
        assert not TRANSITIONS[sent] & {S.SCHEDULED, S.HELD, S.CLAIMED, S.SENDING, S.DELIVERING, S.PAUSED}
    # past its checkpoint the provider may have it: never cancelled, paused, held or merged away (an email goes to
    # review, an SMS or WhatsApp to unknown: app.outbox.reconcile; tests/app/test_dispatch.py walks both)
    assert not TRANSITIONS[S.DELIVERING] & {S.HELD, S.PAUSED, S.CANCELLED, S.SKIPPED, S.MERGED}
    assert not may_move(S.CANCELLED, S.SCHEDULED) and may_move(None, S.SENT) and may_move(S.SENT, S.SENT)


def test_sources_are_what_bulk_updates_filter_on():
    assert sources(S.CLAIMED) == ("delivering", "scheduled", "sending")  # a claim, or a fallback to the next channel
    assert sources(S.CLAIMED, among={S.SCHEDULED}) == ("scheduled",)
    assert set(sources(S.SENT)) == {"held", "scheduled", "paused", "claimed", "sending", "delivering", "unknown",
                                    "review"}
    with pytest.raises(IllegalTransition):
        sources(S.DELIVERING, among={S.SCHEDULED})


def test_a_claim_takes_only_scheduled_rows_whatever_else_is_due(db):
    from app.outbox.claim import claim_due

    rows = {state: make_message(state=state, channel="email", scheduled_for=NOW - timedelta(minutes=5))
            for state in OutboxState}
    db.session.commit()
    claimed = claim_due(NOW, 100)
    assert claimed == [rows[S.SCHEDULED].id]
    db.session.expire_all()
    after = dict(db.session.execute(sa.select(OutboxMessage.id, OutboxMessage.state)).all())
    assert after == {row.id: ("claimed" if state == S.SCHEDULED else state.value) for state, row in rows.items()}


# -- no bare outbox state strings in app/ or admin/ --------------------------------------------------------------------
STATE_NAMES = {s.value for s in OutboxState}
#: the table and the database mapping spell them; everything else says OutboxState.X
OWN_SPELLING = {"app/outbox/states.py", "app/models/messages.py"}
#: other models whose states share a word with the outbox's (a payment is ``unknown`` too)
OTHER_ROWS = {"payment", "Payment", "existing", "earlier"}
#: still to be converted by the helper who owns the file (issue 14); drop a file once it is clean
PENDING: set[str] = set()


def _strings(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        return [v for e in node.elts for v in _strings(e)]
    if isinstance(node, ast.IfExp):
        return _strings(node.body) + _strings(node.orelse)
    return []


def _is_state(node: ast.AST) -> bool:
    return isinstance(node, ast.Attribute) and node.attr == "state" and ast.unparse(node.value) not in OTHER_ROWS


def bare_states(source: str) -> list[tuple[int, str]]:
    """(line, word) for each outbox state spelled as a string where a row's state is compared, filtered, assigned
    or passed as ``state=``."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        words: list[str] = []
        if isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            for side in operands:
                if _is_state(side):
                    words += [w for other in operands if other is not side for w in _strings(other)]
        elif isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Attribute) and func.attr in ("in_", "notin_", "not_in") and _is_state(func.value):
                words += [w for arg in node.args for w in _strings(arg)]
            words += [w for k in node.keywords if k.arg == "state" for w in _strings(k.value)]
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                pairs = (zip(target.elts, node.value.elts, strict=False)
                         if isinstance(target, ast.Tuple) and isinstance(node.value, ast.Tuple)
                         else [(target, node.value)])
                words += [w for t, v in pairs if _is_state(t) for w in _strings(v)]
        found += [(getattr(node, "lineno", 0), w) for w in words if w in STATE_NAMES]
    return found


def test_the_scan_finds_bare_states():
    assert bare_states('row.state = "sent"\nq.where(OutboxMessage.state.in_(("held", "paused")))') == [
        (1, "sent"), (2, "held"), (2, "paused")]
    assert bare_states('OutboxMessage(state="scheduled")\nx = m.state == "review"') == [(1, "scheduled"),
                                                                                         (2, "review")]
    assert bare_states('payment.state = "unknown"\nrow.state = OutboxState.SENT') == []


def test_no_bare_outbox_state_string_is_left_in_app_or_admin():
    offenders = []
    for path in sorted([*(ROOT / "app").rglob("*.py"), *(ROOT / "admin").rglob("*.py")]):
        name = path.relative_to(ROOT).as_posix()
        if name in OWN_SPELLING or name in PENDING:
            continue
        offenders += [f"{name}:{line}: {word!r}" for line, word in bare_states(path.read_text())]
    assert not offenders, "say OutboxState.X (app.outbox.states), not a bare string:\n" + "\n".join(offenders)


def test_pending_files_are_still_pending():
    """A file cleaned by its owner must leave PENDING, so the scan covers it from then on."""
    for name in PENDING:
        assert bare_states((ROOT / name).read_text()), f"{name} is clean now: remove it from PENDING"
