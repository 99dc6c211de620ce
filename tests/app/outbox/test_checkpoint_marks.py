"""A run's sending threads each pass a checkpoint (``sending`` -> ``delivering``) before the provider may have their
message, and an email's thread marks its dot (``delivering`` -> ``sent``). On MariaDB the marks that come at the same
time are committed together by one writer thread (app.group_commit): a statement and a commit per message cost the
dispatcher more CPU than the provider call. Together or not, each thread learns whether *its* row moved: a row
another run has taken over, or that is no longer in the state the mark moves it from, does not move."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa

from app.extensions import db as _db
from app.models import OutboxMessage
from app.outbox import send
from app.outbox.send import _checkpoint, _delivered
from app.outbox.states import IllegalTransition
from app.outbox.states import OutboxState as S
from app.writes import autocommit_engine
from tests.builders import make_message

THREADS = 24


def states(ids: list[int]) -> dict[int, str]:
    _db.session.rollback()
    return dict(_db.session.execute(sa.select(OutboxMessage.id, OutboxMessage.state)
                                    .where(OutboxMessage.id.in_(ids))).all())


def at_once(app, work, items):  # type: ignore[no-untyped-def]
    together = threading.Barrier(len(items))

    def run(item):  # type: ignore[no-untyped-def]
        with app.app_context():
            together.wait()
            return work(item)

    with ThreadPoolExecutor(len(items)) as pool:
        return list(pool.map(run, items))


def test_checkpoints_at_the_same_time_each_learn_whether_their_own_row_moved(app, db, backend):
    ours = [make_message(state=S.SENDING, claimed_by="run-a").id for _ in range(THREADS - 4)]
    taken_over = make_message(state=S.SENDING, claimed_by="run-b").id  # our lease ran out: run-b has it now
    cancelled = make_message(state=S.CANCELLED, claimed_by="run-a").id
    passed = make_message(state=S.DELIVERING, claimed_by="run-a").id  # its checkpoint was committed already
    unclaimed = make_message(state=S.SENDING, claimed_by=None).id
    db.session.commit()
    db.session.remove()
    statements: list[str] = []
    for engine in {_db.engine, autocommit_engine()}:  # wherever marks are written
        sa.event.listen(engine, "before_cursor_execute",
                        lambda conn, cursor, statement, *a: statements.append(statement.split()[0]))
    everyone = ours + [taken_over, cancelled, passed, unclaimed]

    moved = at_once(app, lambda mid: _checkpoint(mid, "run-a"), everyone)

    assert moved == [True] * len(ours) + [False] * 4
    assert states(everyone) == {**{mid: S.DELIVERING for mid in ours}, taken_over: S.SENDING,
                                cancelled: S.CANCELLED, passed: S.DELIVERING, unclaimed: S.SENDING}
    if backend == "mysql":  # a few transactions for all of them, not a statement and a commit each
        assert statements.count("UPDATE") < len(ours) / 2, statements


def test_an_email_s_dot_is_marked_sent_or_back_to_sending_by_its_answer(app, db):
    accepted = [make_message(state=S.DELIVERING, claimed_by="run-a").id for _ in range(6)]
    refused = [make_message(state=S.DELIVERING, claimed_by="run-a").id for _ in range(3)]
    not_ours = make_message(state=S.DELIVERING, claimed_by="run-b").id
    db.session.commit()
    db.session.remove()
    answers = [(mid, 250) for mid in accepted] + [(mid, 554) for mid in refused] + [(not_ours, 250)]

    at_once(app, lambda answer: _delivered(answer[0], "run-a", answer[1]), answers)

    assert states(accepted + refused + [not_ours]) == {**{mid: S.SENT for mid in accepted},
                                                       **{mid: S.SENDING for mid in refused},
                                                       not_ours: S.DELIVERING}
    sent_at = db.session.scalars(sa.select(OutboxMessage.sent_at).where(OutboxMessage.id.in_(accepted))).all()
    assert all(sent_at)
    assert db.session.get(OutboxMessage, refused[0]).sent_at is None


def test_a_mark_the_table_does_not_allow_is_refused(app, db):
    mid = make_message(state=S.SENT, claimed_by="run-a").id
    db.session.commit()
    with pytest.raises(IllegalTransition):
        send._mark(send._Mark(mid, "run-a", S.SENT, S.SENDING))
    assert states([mid]) == {mid: S.SENT}


def test_a_lock_conflict_is_tried_again_and_the_marks_still_land(app, db, backend, monkeypatch):
    mid = make_message(state=S.SENDING, claimed_by="run-a").id
    db.session.commit()
    db.session.remove()
    real = send._marks_in
    calls = []

    def conflict_once(conn, marks):  # type: ignore[no-untyped-def]
        calls.append(len(marks))
        if len(calls) == 1:
            code = 1213 if backend == "mysql" else None
            raise sa.exc.OperationalError("SELECT ... FOR UPDATE", {}, Exception(code, "Deadlock found")
                                          if code else Exception("database is locked"))
        return real(conn, marks)

    monkeypatch.setattr(send, "_marks_in", conflict_once)
    assert _checkpoint(mid, "run-a") is True
    assert calls == [1, 1]
    assert states([mid]) == {mid: S.DELIVERING}
