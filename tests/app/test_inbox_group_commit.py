"""The inbox's group commit (app.inbox): on MariaDB the webhooks a web process's request threads store at the same
time go in one INSERT, and none is answered before that INSERT has committed; a re-delivery is its row's duplicate,
within one INSERT or across two; a row that can never be stored fails alone; a webhook that could not be stored is
answered 5xx and stored when the provider sends it again."""

import threading
import time

import pytest
import sqlalchemy as sa

from app import inbox
from app.channels.sms import twilio_signature
from app.extensions import db
from app.models import InboundEvent
from app.models.types import utcnow
from app.queue import RQQueue
from app.writes import autocommit_engine
from tests import backends

TOKEN = "twilio-group-commit-token"


@pytest.fixture
def mariadb(backend):
    if backend != "mysql":
        pytest.skip("the writer thread is MariaDB's (on SQLite each webhook is stored at once)")


def row(event_id: str, **overrides):
    return {"provider": "twilio", "event_id": event_id, "event_type": "delivered",
            "payload": {"form": {"MessageSid": event_id}, "url": None}, "account_id": None,
            "received_at": utcnow(), "attempts": 0, "processed_at": None, "error": None, **overrides}


def stored_ids() -> dict[str, int]:
    db.session.rollback()
    return dict(db.session.execute(sa.select(InboundEvent.event_id, InboundEvent.id)).all())


class HeldWriter:
    """Holds the writer in its first INSERT until ``pending`` more rows are waiting, so they go in one more."""

    def __init__(self, monkeypatch, pending: int) -> None:
        self.batches: list[list[str]] = []
        self.pending = pending
        self.answered_early: list[str] = []
        self.threads: list[threading.Thread] = []
        real = inbox._write

        def write(engine, rows):  # type: ignore[no-untyped-def]
            if not self.batches:
                writer = self._writer
                deadline = time.monotonic() + 10
                while len(writer._handed) < self.pending and time.monotonic() < deadline:
                    time.sleep(0.01)
            # nobody whose row this is has been answered yet
            self.answered_early += [t.name for t in self.threads if not t.is_alive() and t.name in
                                    {r["event_id"] for r in rows}]
            self.batches.append([r["event_id"] for r in rows])
            return real(engine, rows)

        monkeypatch.setattr(inbox, "_write", write)

    def run(self, app, rows) -> list:  # type: ignore[no-untyped-def]
        """Each row stored by a thread of its own, as request threads do: the results, in order."""
        self._writer = inbox._writer()
        results: list = [None] * len(rows)

        def store(i: int) -> None:
            with app.app_context():
                try:
                    results[i] = inbox._store_alone(rows[i])
                except Exception as exc:
                    results[i] = exc

        for i, r in enumerate(rows):
            self.threads.append(threading.Thread(target=store, args=(i,), name=r["event_id"]))
            self.threads[-1].start()
            if i == 0:
                time.sleep(0.1)  # the first is in the writer's hands before the rest arrive
        for thread in self.threads:
            thread.join(15)
        return results


def test_webhooks_stored_at_the_same_time_go_in_one_insert_answered_after_it(app, db, mariadb, monkeypatch):
    inserts: list[int] = []
    sa.event.listen(autocommit_engine(), "before_cursor_execute",
                    lambda conn, cursor, statement, *a: inserts.append(1) if statement.startswith("INSERT") else None)
    rows = [row(f"SMgroup{i}:delivered") for i in range(8)] + [row("SMgroup3:delivered")]  # Twilio twice
    held = HeldWriter(monkeypatch, pending=len(rows) - 1)
    results = held.run(app, rows)

    assert held.batches == [["SMgroup0:delivered"], [r["event_id"] for r in rows[1:]]]
    assert len(inserts) == 2  # one INSERT (and commit) for the eight that came together
    assert held.answered_early == []
    ids = stored_ids()
    assert len(ids) == 8
    assert results[:8] == [(ids[r["event_id"]], False) for r in rows[:8]]
    assert results[8] == (ids["SMgroup3:delivered"], True)  # the re-delivery is the same row


def test_a_redelivery_later_is_a_duplicate_of_its_row(app, db):
    first = inbox._store_alone(row("SMagain:delivered"))
    assert first[1] is False
    again = inbox._store_alone(row("SMagain:delivered"))
    assert again == (first[0], True)
    assert list(stored_ids()) == ["SMagain:delivered"]


def test_a_row_that_can_never_be_stored_fails_alone(app, db, mariadb, monkeypatch):
    # its gateway account is gone (deleted as the webhook came in): the foreign key refuses it
    rows = [row("SMgood0:delivered"), row("nmi-orphan", provider="nmi", account_id=987654321),
            row("SMgood1:delivered"), row("SMgood2:delivered")]
    held = HeldWriter(monkeypatch, pending=len(rows) - 1)
    results = held.run(app, rows)

    assert isinstance(results[1], sa.exc.IntegrityError)
    ids = stored_ids()
    assert sorted(ids) == ["SMgood0:delivered", "SMgood1:delivered", "SMgood2:delivered"]
    assert [results[i] for i in (0, 2, 3)] == [(ids[rows[i]["event_id"]], False) for i in (0, 2, 3)]


def test_a_webhook_not_stored_is_answered_5xx_and_stored_when_sent_again(app, db, mariadb, client, monkeypatch,
                                                                         pytestconfig):
    if not pytestconfig._recoup_redis:
        pytest.skip("Redis not available")
    queue = app.extensions["recoup.queue"] = RQQueue(backends.REDIS_URL)
    queue.connection.flushdb()
    app.config.update(TWILIO_AUTH_TOKEN=TOKEN)
    inbox.prepare()  # as a web process starts: its writer is running
    assert app.extensions[inbox._WRITER].engine is autocommit_engine()
    url = "http://localhost/hooks/twilio/status"
    form = {"MessageSid": "SM" + "7" * 32, "MessageStatus": "delivered", "AccountSid": "AC" + "0" * 32}
    headers = {"X-Twilio-Signature": twilio_signature(TOKEN, url, form)}

    def server_gone(engine, rows):  # type: ignore[no-untyped-def]
        raise sa.exc.OperationalError("INSERT INTO inbound_events", {}, Exception("MariaDB went away"))

    with monkeypatch.context() as patch:
        patch.setattr(inbox, "_write", server_gone)
        client.application.config["PROPAGATE_EXCEPTIONS"] = False
        assert client.post(url, data=form, headers=headers).status_code == 500
    assert stored_ids() == {}
    assert client.post(url, data=form, headers=headers).status_code == 204  # Twilio tries again
    assert list(stored_ids()) == [f"{form['MessageSid']}:delivered"]
    queue.connection.flushdb()
