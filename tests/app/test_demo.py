"""`make demo`'s command starts the app on embedded defaults, with no MariaDB or Redis needed: it seeds an admin, an
author and an approver, says what to do first, keeps quiet about each request, and its sandbox inboxes show after
a restart what its database says was sent."""

import logging
import os
import re
import socket
import subprocess
import sys
import time
from decimal import Decimal

import pytest
import requests
import sqlalchemy as sa


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_demo_serves_the_admin_behind_sign_in_and_says_what_to_do_first(tmp_path):
    port = free_port()
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'demo.db'}", "RECOUP_DEMO_FREE_PORTS": "1",
           "RECOUP_DEMO_HISTORY": "300"}  # a short past: this test is about starting, not about the history
    env.pop("REDIS_URL", None)
    env.pop("RECOUP_ACCESS_LOG", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "flask", "--app", "wsgi", "demo", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                response = requests.get(f"{base}/admin/", allow_redirects=False, timeout=2)
                break
            except requests.ConnectionError:
                assert proc.poll() is None, proc.stdout.read()
                time.sleep(0.5)
        else:
            raise AssertionError("the demo did not start within 60 s")
        assert response.status_code == 302 and "/login" in response.headers["Location"]
        page = requests.get(f"{base}/login", timeout=5)
        assert page.status_code == 200 and "Sign in to Recoup" in page.text
        browser = requests.Session()
        token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', browser.get(f"{base}/login").text)
        signed_in = browser.post(f"{base}/login", data={"email": "author@recoup.example", "csrf_token": token[1],
                                                        "password": "recoup-author-2026"}, timeout=10)
        assert signed_in.status_code == 200 and "/admin/" in signed_in.url
        for _ in range(20):
            requests.get(f"{base}/login", timeout=5)
    finally:
        proc.terminate()
        output, _ = proc.communicate(timeout=20)
    assert f"http://127.0.0.1:{port}/admin/" in output
    for email, password in (("demo@recoup.example", "recoup-demo-2026"), ("author@recoup.example",
                            "recoup-author-2026"), ("approver@recoup.example", "recoup-approver-2026")):
        assert email in output and password in output
    assert f"open Demo control (http://127.0.0.1:{port}/admin/demo/)" in output
    assert re.search(r"4111 1111 1111 1111\s+approves", output) and re.search(r"4000 0000 0000 0002\s+declines", output)
    assert "GET /login" not in output and "HTTP/1.1" not in output  # no access log
    assert re.search(r"History:\s+300 failed payments over 90 days", output)


@pytest.fixture
def werkzeug_level():
    logger = logging.getLogger("werkzeug")
    level = logger.level
    yield logger
    logger.setLevel(level)


def test_access_logs_are_quiet_unless_asked_for(werkzeug_level, monkeypatch):
    from app.cli.ops import quiet_access_log

    werkzeug_level.setLevel(logging.NOTSET)
    monkeypatch.setenv("RECOUP_ACCESS_LOG", "1")
    assert quiet_access_log() is False
    assert werkzeug_level.level == logging.NOTSET
    monkeypatch.delenv("RECOUP_ACCESS_LOG")
    assert quiet_access_log() is True
    assert not werkzeug_level.isEnabledFor(logging.INFO) and werkzeug_level.isEnabledFor(logging.ERROR)


def test_the_cards_the_demo_names_are_the_simulators():
    from app.demo.run import TEST_CARDS
    from sandbox.nmi.collect import DECLINING_CARDS, luhn_ok

    for number, outcome in TEST_CARDS:
        digits = number.replace(" ", "")
        assert luhn_ok(digits)
        assert DECLINING_CARDS.get(digits, "approve") == outcome, number


def run_demo_in_process(db_file, history: int = 0):  # type: ignore[no-untyped-def]
    """The demo started in this process; without a seeded past unless ``history`` says how many failures."""
    from app import create_app
    from app.demo.run import run_demo

    app = create_app({"SQLALCHEMY_DATABASE_URI": f"sqlite:///{db_file}", "REDIS_URL": None,
                      "DEMO_HISTORY": history})
    with app.app_context():
        started = run_demo(app, host="127.0.0.1", port=free_port(), serve=False, fixed_ports=False)
    started["scheduler"].stop()  # before its first run: the test dispatches itself, nothing races it
    return app, started


def stop(started) -> None:  # type: ignore[no-untyped-def]
    started["scheduler"].stop()
    for sim in started["simulators"].values():
        sim.stop()


def sent(app, channel: str) -> list[int]:  # type: ignore[no-untyped-def]
    """The outbox rows the admin lists as sent on ``channel``."""
    from app.extensions import db
    from app.models import OutboxMessage

    with app.app_context():
        return sorted(db.session.scalars(sa.select(OutboxMessage.id).where(
            OutboxMessage.channel == channel, OutboxMessage.state.in_(("sent", "delivered", "read")))))


def in_inbox(started, channel: str) -> list[int]:  # type: ignore[no-untyped-def]
    """The outbox rows a simulator's inbox holds a message of (each carries its row's reference, m<id>)."""
    sims = started["simulators"]
    if channel == "email":
        references = [m["reference"] for m in sims["smtp"].received()]
    else:
        references = [m["_reference"] for m in sims["twilio"].messages.values()]
    return sorted(int(r[1:]) for r in references if r and re.fullmatch(r"m\d+", r))


def test_after_a_restart_the_inboxes_show_what_the_admin_says_was_sent(tmp_path, werkzeug_level):
    from app.demo import control as demo_control
    from app.extensions import db
    from app.models import Customer, OutboxMessage

    app, started = run_demo_in_process(tmp_path / "demo.db")
    try:
        assert app.config["DEMO_MODE"] and "demo.index" in app.view_functions
        with app.app_context():
            wanted = demo_control.FailureRequest(
                customer_id=None, name="Lucía García", email="lucia@example.com", phone="+34612345678",
                country="ES", amount=Decimal("49.00"), currency="EUR", product_type="subscription",
                decline_code="202")
            demo_control.fail_payment(wanted, actor="test")
            for _ in range(3):  # the next steps of the demo's case (and whatever else falls due meanwhile)
                demo_control.advance_clock("next", actor="test")
            lucia = db.session.scalars(sa.select(OutboxMessage.id).where(
                OutboxMessage.address == "lucia@example.com", OutboxMessage.state == "sent")).all()
            db.session.remove()
        emails, texts = sent(app, "email"), sent(app, "sms")
        assert lucia and set(lucia) <= set(emails) and texts
        assert in_inbox(started, "email") == emails and in_inbox(started, "sms") == texts
    finally:
        stop(started)
    assert (tmp_path / "demo-inboxes" / "smtp.jsonl").exists()

    with app.app_context():
        from app.demo.world import last_gateway_id

        held = last_gateway_id()
        db.session.remove()
    again, restarted = run_demo_in_process(tmp_path / "demo.db")
    try:
        assert in_inbox(restarted, "email") == sent(again, "email")  # the restart may have sent more: both agree
        assert in_inbox(restarted, "sms") == sent(again, "sms")
        assert set(emails) <= set(sent(again, "email")) and set(texts) <= set(sent(again, "sms"))
        inbox = requests.get(f"{restarted['inboxes']['email']}/lucia@example.com", timeout=5).text
        assert "/pay/" in inbox
        with again.app_context():  # and her card on file can still be charged
            vault_id = db.session.scalar(sa.select(Customer.vault_id).where(Customer.email == "lucia@example.com"))
        assert vault_id.startswith("CV-DEMO-") and restarted["simulators"]["nmi"].vault(vault_id) is not None
        with again.app_context():  # a payment failed after the restart opens its case: the simulator, seeded
            # alike, must not hand out an id the database already holds (it did: "the fetch opened no case")
            again_failed = demo_control.fail_payment(demo_control.FailureRequest(
                customer_id=None, name="Haruto Sato", email="haruto@example.jp", phone="+819012345678",
                country="JP", amount=Decimal("42.00"), currency="USD", product_type="subscription",
                decline_code="202"), actor="test")
            assert again_failed.case_id is not None
            assert int(again_failed.transaction_id) > held  # never an id of the past, whatever the sequence did
            db.session.remove()
    finally:
        stop(restarted)


def test_a_new_database_starts_with_empty_inboxes(tmp_path, werkzeug_level):
    folder = tmp_path / "demo-inboxes"
    folder.mkdir()
    (folder / "smtp.jsonl").write_text('{"kind": "mail", "index": 1, "rcpt_tos": ["old@example.com"], "raw": ""}\n')
    _, started = run_demo_in_process(tmp_path / "demo.db")
    try:
        assert all(m["rcpt_tos"] != ["old@example.com"] for m in started["simulators"]["smtp"].received())
    finally:
        stop(started)


def test_a_new_demo_opens_on_a_dashboard_with_a_past_and_a_restart_keeps_it(tmp_path, werkzeug_level):
    """A fresh database gets the seeded history (counted for the dashboard before the first page); a restart seeds
    nothing more, the audit chain holds, and the live demo's own failures come on top. The policy's experiment runs
    through both: every case outside the holdout, the history's and the live demo's, is in an arm, and a restart
    carries on the same experiment."""
    from app.analytics.report import Filters, kpis
    from app.audit import verify_chain
    from app.extensions import db
    from app.models import ArmAssignment, Experiment, RecoveryCase

    def experiment_and_arms():  # type: ignore[no-untyped-def]
        [row] = db.session.scalars(sa.select(Experiment)).all()
        planned = db.session.scalar(sa.select(sa.func.count()).select_from(RecoveryCase)
                                    .where(RecoveryCase.holdout.is_(False)))
        assigned = db.session.scalar(sa.select(sa.func.count()).select_from(ArmAssignment)
                                     .where(ArmAssignment.experiment_id == row.id))
        return row.id, row.status, planned, assigned

    app, started = run_demo_in_process(tmp_path / "demo.db", history=400)
    try:
        assert started["history"] is not None and started["history"].failures == 400
        with app.app_context():
            failed = sum(k.failed_n for k in kpis(Filters()))
            cases = db.session.scalar(sa.select(sa.func.count()).select_from(RecoveryCase))
            assert failed == cases > 400  # the history and the live demo's fetched failures, all counted
            experiment, status, planned, assigned = experiment_and_arms()
            assert status == "running" and assigned == planned > 400
            assert verify_chain(app.config).ok
            db.session.remove()
    finally:
        stop(started)
    again, restarted = run_demo_in_process(tmp_path / "demo.db", history=400)
    try:
        assert restarted["history"] is None
        with again.app_context():
            assert db.session.scalar(sa.select(sa.func.count()).select_from(RecoveryCase)) == cases
            assert experiment_and_arms() == (experiment, "running", planned, assigned)
            assert verify_chain(again.config).ok
            db.session.remove()
    finally:
        stop(restarted)
