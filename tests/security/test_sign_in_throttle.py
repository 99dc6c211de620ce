"""Finding 4 and the low one on sessions: a lockout that holds under concurrency, per account and client and per
client; the same answer and the same work for an unknown account; sessions that end at sign-out and with a new
password (issue 15)."""

from __future__ import annotations

import threading

import pytest

import app.accounts.users as users_service
import app.models.users as user_models
from app.accounts.users import NOT_RIGHT, TOO_MANY, create_user
from app.extensions import db
from app.models import User

PASSWORD = "correct horse battery"


def _sign_in(client, email, password=PASSWORD, address="127.0.0.1"):  # type: ignore[no-untyped-def]
    return client.post("/login", data={"email": email, "password": password},
                       environ_base={"REMOTE_ADDR": address})


@pytest.fixture
def checks(monkeypatch):  # type: ignore[no-untyped-def]
    """Every password hash checked, real or dummy."""
    seen: list[str] = []
    real = user_models.check_password_hash

    def counting(hashed, password):  # type: ignore[no-untyped-def]
        seen.append(password)
        return real(hashed, password)

    monkeypatch.setattr(user_models, "check_password_hash", counting)
    monkeypatch.setattr(users_service, "check_password_hash", counting)
    return seen


def test_sixty_parallel_wrong_passwords_check_at_most_the_limit(app, backend, checks):
    if backend != "mysql":
        pytest.skip("parallel sign-ins are tested on MariaDB (SQLite serialises every writer)")
    create_user("target@example.com", PASSWORD, ["operator"])
    limit = app.config["LOGIN_MAX_FAILURES"]
    barrier = threading.Barrier(60)
    answers: list[int] = []

    def guess(n: int) -> None:
        client = app.test_client()
        barrier.wait()
        answers.append(_sign_in(client, "target@example.com", f"wrong guess {n:04d}").status_code)

    threads = [threading.Thread(target=guess, args=(n,)) for n in range(60)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(answers) == 60 and set(answers) == {401}
    assert len(checks) <= limit, f"{len(checks)} passwords were checked, the limit is {limit}"
    # and the account is locked from that address: even the right password is not checked now
    checks.clear()
    locked = _sign_in(app.test_client(), "target@example.com")
    assert locked.status_code == 401 and TOO_MANY in locked.get_data(as_text=True) and checks == []


def test_a_lockout_from_one_address_does_not_lock_the_owner_out_elsewhere(app, client):
    create_user("owner@example.com", PASSWORD, ["operator"])
    for n in range(app.config["LOGIN_MAX_FAILURES"]):
        _sign_in(client, "owner@example.com", f"attacker guess {n}", address="203.0.113.9")
    assert TOO_MANY in _sign_in(client, "owner@example.com", address="203.0.113.9").get_data(as_text=True)
    assert _sign_in(app.test_client(), "owner@example.com", address="198.51.100.7").status_code == 302


def test_one_address_cannot_spray_guesses_over_many_accounts(app, client, checks):
    limit = app.config["LOGIN_CLIENT_MAX_FAILURES"]
    for n in range(limit):
        assert _sign_in(client, f"person{n}@example.com", "a wrong password").status_code == 401
    checks.clear()
    refused = _sign_in(client, "someone.new@example.com", "a wrong password")
    assert TOO_MANY in refused.get_data(as_text=True) and checks == []
    assert _sign_in(app.test_client(), "someone.new@example.com", "x" * 12, address="192.0.2.1").status_code == 401


def test_many_addresses_are_stopped_by_the_account_backstop(app, checks):
    create_user("vip@example.com", PASSWORD, ["admin"])
    limit = app.config["LOGIN_ACCOUNT_MAX_FAILURES"]
    for n in range(limit):
        _sign_in(app.test_client(), "vip@example.com", "wrong one", address=f"10.0.{n // 250}.{n % 250}")
    checks.clear()
    assert TOO_MANY in _sign_in(app.test_client(), "vip@example.com", address="10.9.9.9").get_data(as_text=True)
    assert checks == []
    assert db.session.get(User, db.session.scalar(db.select(User.id).where(User.email == "vip@example.com")))\
        .locked_until is not None


def test_an_unknown_account_gets_the_same_answer_and_the_same_work(app, client, checks):
    create_user("known@example.com", PASSWORD, ["operator"])
    known = _sign_in(client, "known@example.com", "wrong password!")
    assert len(checks) == 1
    unknown = _sign_in(client, "nobody@example.com", "wrong password!")
    assert len(checks) == 2, "an unknown account must cost a password check too"
    assert known.status_code == unknown.status_code == 401
    assert NOT_RIGHT in known.get_data(as_text=True) and NOT_RIGHT in unknown.get_data(as_text=True)
    # and an unknown account locks after as many tries as a real one
    for _ in range(app.config["LOGIN_MAX_FAILURES"] - 1):
        _sign_in(client, "known@example.com", "wrong password!")
        _sign_in(client, "nobody@example.com", "wrong password!")
    assert TOO_MANY in _sign_in(client, "known@example.com").get_data(as_text=True)
    assert TOO_MANY in _sign_in(client, "nobody@example.com").get_data(as_text=True)


def test_a_right_password_starts_the_count_again(app, client):
    create_user("typo@example.com", PASSWORD, ["operator"])
    for _ in range(2):
        for _ in range(app.config["LOGIN_MAX_FAILURES"] - 1):
            _sign_in(client, "typo@example.com", "tpyo tpyo tpyo")
        assert _sign_in(client, "typo@example.com").status_code == 302
        client.post("/logout")


def test_old_counters_are_forgotten(app, client):
    from datetime import timedelta

    from app.accounts import login_throttle
    from app.models.types import utcnow
    from app.models.users import SignInThrottle

    for n in range(3):
        _sign_in(client, f"made.up{n}@example.com", "a wrong password")
    assert db.session.scalar(db.select(db.func.count()).select_from(SignInThrottle)) > 0
    later = utcnow() + timedelta(seconds=app.config["LOGIN_FAILURE_WINDOW_SECONDS"] + 1)
    assert login_throttle.prune(login_throttle.SignInLimits.from_config(app.config), later) > 0
    db.session.commit()
    assert db.session.scalar(db.select(db.func.count()).select_from(SignInThrottle)) == 0


def test_a_counter_pruned_while_an_attempt_reserves_is_made_again(app, monkeypatch):
    """prune() may delete a stale counter between the attempt making its row and reserving on it: the attempt is
    still counted and checked, not refused as throttled."""
    from app.accounts import login_throttle

    limits = login_throttle.SignInLimits.from_config(app.config)
    attempt = login_throttle.counters("late@example.com", "192.0.2.9", limits)
    real = login_throttle._ensure_rows
    calls: list[list[str]] = []

    def first_time_nothing(keys, now):  # type: ignore[no-untyped-def]
        calls.append(keys)
        if len(calls) > 1:
            real(keys, now)

    monkeypatch.setattr(login_throttle, "_ensure_rows", first_time_nothing)
    assert login_throttle.reserve(attempt, limits) is True


# -- sessions ------------------------------------------------------------------------------------------------------
def _copy_session(source, target) -> None:  # type: ignore[no-untyped-def]
    cookie = source.get_cookie("session")
    assert cookie is not None
    target.set_cookie("session", cookie.value)


def _admin_status(app, client) -> int:  # type: ignore[no-untyped-def]
    """GET /admin/ in an app context of its own, as a real server gives each request (the test's context would
    carry the last request's signed-in user over in ``g``)."""
    with app.app_context():
        return int(client.get("/admin/").status_code)


def test_signing_out_ends_a_copied_session_too(app, client, auth):
    auth.login("operator")
    thief = app.test_client()
    _copy_session(client, thief)
    assert _admin_status(app, thief) == 200
    auth.logout()
    assert _admin_status(app, thief) == 302


def test_a_new_password_ends_other_sessions_and_keeps_this_one(app, client, auth):
    email = auth.login("operator")
    other = app.test_client()
    _copy_session(client, other)
    changed = client.post("/admin/profile/password", data={"current_password": PASSWORD,
                                                           "password": "a brand new passphrase",
                                                           "confirm": "a brand new passphrase"})
    assert changed.status_code == 302
    assert _admin_status(app, client) == 200
    assert _admin_status(app, other) == 302
    assert _sign_in(app.test_client(), email, "a brand new passphrase").status_code == 302


def test_a_password_set_by_someone_else_ends_the_sessions(app, client, auth):
    email = auth.login("operator")
    user = db.session.scalar(db.select(User).where(User.email == email))
    user.set_password("set by an admin 123")
    db.session.commit()
    assert _admin_status(app, client) == 302


def test_a_deactivated_account_loses_its_session(app, client, auth):
    email = auth.login("operator")
    db.session.scalar(db.select(User).where(User.email == email)).active = False
    db.session.commit()
    assert _admin_status(app, client) == 302


def test_a_session_id_without_its_version_is_refused(app):
    from app.web.auth import load_user

    user = create_user("old@example.com", PASSWORD, ["operator"])
    assert load_user(str(user.id)) is None and load_user("9" * 40 + ":0") is None
    assert load_user(user.get_id()) is not None
