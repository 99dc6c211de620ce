"""Policy authoring through the admin: live check, draft, simulation against real cases, submit, approve, activate,
diff, roll back — each change in the audit log."""

from __future__ import annotations

import sqlalchemy as sa

from app.extensions import db
from app.models import AuditEntry, Policy, PolicyVersion
from tests.admin.world import STANDARD

CHANGED = STANDARD.replace("step after 1d via sms, whatsapp", "step after 12h via sms, whatsapp")


def test_check_reports_line_and_column(client, auth, world):
    auth.login("author")
    broken = CHANGED.replace("segment vip        when customer.vip", "segment vip        when customer.vipp")
    body = client.post("/admin/policies/check", json={"source": broken}).get_json()
    assert body["ok"] is False
    [problem] = body["diagnostics"]
    col = broken.splitlines()[2].index("customer.vipp") + 1
    assert (problem["line"], problem["col"], problem["severity"]) == (3, col, "error")
    assert 'did you mean "customer.vip"' in problem["message"]
    assert client.post("/admin/policies/check", json={"source": CHANGED}).get_json() == {
        "ok": True, "diagnostics": [], "power": ""}  # no experiment: nothing for the power calculator to say
    assert client.post("/admin/policies/check", json={}).status_code == 400


def test_check_answers_with_the_power_calculator_for_an_experiment(client, auth, world):
    """The world's history (its cases of the last four weeks) gives the volume; the text says cases and days."""
    auth.login("author")
    with_experiment = CHANGED.replace("\nend\n", """
  experiment "final notice sooner"
    arm control 50%
    arm sooner 50%
      cadence max 2 per day
    end
  end
end
""")
    body = client.post("/admin/policies/check", json={"source": with_experiment}).get_json()
    assert body["ok"] is True, body["diagnostics"]
    assert "to see a rise of 5 points in recovery from" in body["power"]
    assert "cases in all arms" in body["power"]
    broken = with_experiment.replace("arm sooner 50%", "arm sooner 40%")
    body = client.post("/admin/policies/check", json={"source": broken}).get_json()
    assert body["ok"] is False and body["power"] == ""
    assert any("100%" in d["message"] for d in body["diagnostics"])


def test_simulation_compares_the_draft_with_the_running_version(client, auth, world):
    auth.login("author")
    fewer = CHANGED.replace('    step after 5d via email template "final_notice"\n', "")
    page = client.post("/admin/policies/simulate/standard", data={"source": fewer, "days": "30"})
    text = page.get_data(as_text=True)
    assert page.status_code == 200 and "Cases per segment" in text and "standard v1" in text
    assert "sim-delta-down" in text  # fewer e-mails than the running version
    assert "Quiet hours" in text or "Outside business hours" in text
    bad = client.post("/admin/policies/simulate/standard", data={"source": "policy \"x\"\n  segment\nend\n"})
    assert "cannot be simulated yet" in bad.get_data(as_text=True)


def test_simulation_says_when_history_is_too_thin_to_estimate_recoveries(client, auth, world):
    auth.login("author")
    page = client.post("/admin/policies/simulate/standard", data={"source": CHANGED, "days": "30"})
    text = page.get_data(as_text=True)
    # six cases planned in all: far fewer than a estimate needs, so no numbers are shown
    assert page.status_code == 200 and "Expected recoveries" in text and 'id="sim-estimates-thin"' in text
    assert "Too thin to tell" in text and 'id="sim-estimates-table"' not in text


def test_simulation_estimates_recoveries_and_money_per_currency(client, auth, app):
    from app.models.types import utcnow
    from app.recovery.policies import activate_text
    from tests.app.test_backtest_estimates import ACTIVE, DRAFT, PLANTED, plant_history, recent_cases

    now = utcnow()
    activate_text("standard", ACTIVE, actor=None, note="test set-up")
    plant_history(now, PLANTED)
    recent_cases(now, 20)
    recent_cases(now, 10, currency="EUR", amount=8000)
    auth.login("author")
    text = client.post("/admin/policies/simulate/standard", data={"source": DRAFT, "days": "30"}).get_data(as_text=True)
    assert 'id="sim-estimates-table"' in text and "Too thin to tell" not in text
    assert 'data-verdict="better"' in text and "more cases than the running version" in text
    assert 'data-currency="USD"' in text and 'data-currency="EUR"' in text and 'data-difference="EUR"' in text
    assert "$450.00" in text and "€360.00" in text  # 45 % of what each currency's cases owe, each apart
    assert "Measured rates used" in text and "54 of 120 measured; used for 30 cases" in text
    assert "45.0%" in text and "20.0%" in text  # the draft's WhatsApp rate and the running version's email rate


def test_author_to_approver_to_rollback(client, auth, world):
    auth.login("author")
    saved = client.post("/admin/policies/edit/standard", data={"source": CHANGED}, follow_redirects=True)
    assert "Draft saved" in saved.get_data(as_text=True)
    client.post("/admin/policies/submit/standard", data={"source": CHANGED, "note": "earlier SMS"})
    v2 = db.session.scalar(sa.select(PolicyVersion).where(PolicyVersion.number == 2))
    assert v2.status == "pending_approval" and v2.note == "earlier SMS"
    auth.logout()

    auth.login("approver")
    assert "say why" in client.post(f"/admin/policies/approve/{v2.id}", data={"reason": " "},
                                    follow_redirects=True).get_data(as_text=True)
    client.post(f"/admin/policies/approve/{v2.id}", data={"reason": "simulated, fine"})
    client.post(f"/admin/policies/activate/{v2.id}")
    db.session.expire_all()
    policy = db.session.scalar(sa.select(Policy).where(Policy.name == "standard"))
    assert policy.active_version.number == 2
    v1 = db.session.scalar(sa.select(PolicyVersion).where(PolicyVersion.number == 1))

    diff = client.get(f"/admin/policies/diff?a={v1.id}&b={v2.id}").get_data(as_text=True)
    assert diff.count('class="diff-changed"') == 1 and "12h" in diff and "simulated, fine" in diff

    history = client.get("/admin/policies/history/standard").get_data(as_text=True)
    assert "earlier SMS" in history and "simulated, fine" in history

    # four-eyes (the default) holds for a rollback too: the copy waits for another approver
    rolled = client.post("/admin/policies/rollback/standard", data={"to_number": "1", "reason": "complaints"},
                         follow_redirects=True).get_data(as_text=True)
    assert "waits for another approver" in rolled
    db.session.expire_all()
    v3 = db.session.scalar(sa.select(PolicyVersion).where(PolicyVersion.number == 3))
    assert v3.status == "pending_approval" and v3.source == v1.source and v3.based_on_version_id == v1.id
    assert db.session.scalar(sa.select(Policy).where(Policy.name == "standard")).active_version.number == 2
    refused = client.post(f"/admin/policies/approve/{v3.id}", data={"reason": "mine"}, follow_redirects=True)
    assert "someone other than its author" in refused.get_data(as_text=True)
    auth.logout()

    auth.login("approver")  # another approver
    client.post(f"/admin/policies/approve/{v3.id}", data={"reason": "complaints confirmed"})
    client.post(f"/admin/policies/activate/{v3.id}")
    db.session.expire_all()
    policy = db.session.scalar(sa.select(Policy).where(Policy.name == "standard"))
    assert policy.active_version.number == 3 and policy.active_version.source == v1.source
    actions = db.session.scalars(sa.select(AuditEntry.action)).all()
    for action in ("policy.draft_saved", "policy.version_submitted", "policy.version_approved", "policy.activated"):
        assert action in actions


def test_submitting_a_broken_draft_is_refused_with_its_errors(client, auth, world):
    auth.login("author")
    page = client.post("/admin/policies/submit/standard", data={"source": CHANGED.replace(" via email", " vai email")},
                       follow_redirects=True)
    assert "the policy has errors" in page.get_data(as_text=True)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(PolicyVersion)) == 1


def test_a_new_policy_starts_from_a_readable_example(client, auth, world):
    auth.login("author")
    response = client.post("/admin/policies/new", data={"name": "Holiday Season"}, follow_redirects=True)
    text = response.get_data(as_text=True)
    assert "holiday_season" in text and "segment vip" in text
    assert "lower-case" in client.post("/admin/policies/new", data={"name": "9!"},
                                       follow_redirects=True).get_data(as_text=True)
