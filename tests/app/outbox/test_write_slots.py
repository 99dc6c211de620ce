"""A run's sending threads write their checkpoints on connections of the one-statement engine (app.writes), never on
more at once than its pool keeps: past them the pool would open overflow connections and close them again as soon as
they came back, each costing a handshake and a TLS context, more than the message (the dispatch bench saw a hundred
and more opened in a run of 3,000 messages)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa

from app.models import OutboxMessage
from app.outbox.send import _checkpoint
from app.outbox.states import OutboxState as S
from app.writes import autocommit_engine
from tests.builders import make_message

THREADS = 24
KEPT = 3


def test_checkpoints_hold_no_more_connections_than_the_pool_keeps(app, db, backend):
    if backend != "mysql":
        pytest.skip("on SQLite one-statement writes use the app's engine, one writer at a time")
    app.config["SQLALCHEMY_ENGINE_OPTIONS"] = {**app.config["SQLALCHEMY_ENGINE_OPTIONS"], "pool_size": KEPT}
    ids = [make_message(state=S.SENDING, claimed_by="run-a").id for _ in range(THREADS)]
    db.session.commit()
    db.session.remove()
    engine = autocommit_engine()
    assert engine is not db.engine and engine.pool.size() == KEPT  # type: ignore[attr-defined]
    guard = threading.Lock()
    opened = [0]

    def connect(*_: object) -> None:
        with guard:
            opened[0] += 1

    sa.event.listen(engine, "connect", connect)
    together = threading.Barrier(THREADS)

    def mark(mid: int) -> bool:
        with app.app_context():
            together.wait()
            return _checkpoint(mid, "run-a")

    with ThreadPoolExecutor(THREADS) as pool:
        marked = list(pool.map(mark, ids))
    assert all(marked)
    states = db.session.scalars(sa.select(OutboxMessage.state).where(OutboxMessage.id.in_(ids))).all()
    assert set(states) == {S.DELIVERING}
    assert opened[0] <= KEPT  # before: one per thread that found the kept ones busy (22 of 24 here)
