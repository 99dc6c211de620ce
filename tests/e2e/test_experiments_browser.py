"""An experiment from the first line to the promoted winner, in a real browser (Playwright driving Debian's Chromium)
against the app on a real server (issue 18, done-when 5).

An author writes an experiment block into the running policy: the editor says how many cases and days it needs (the
power calculator, from the history); a mistake in the block is shown at its line and column. The author submits;
an approver approves and activates: the experiment starts. Time is warped: cases come in and are planned by the
real planner into their arms, their first messages go; the results page fills in. One variant makes customers opt
out: the periodic check's guardrail stops it, and the page says so. An auditor reads everything and may change
nothing; an author may not stop a test. The author promotes the winner: a new version waits for approval, the
approver approves and activates it, and the audit log shows every step. Screenshots at 1280 and 375 px go to
test-artifacts/screenshots/, and axe finds nothing serious on the results page.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.e2e.harness import (
    BROWSER,
    PASSWORD,
    LiveServer,
    canvas_drawn,
    check_accessibility,
    post_from_page,
    shot,
    sign_in,
)

pytestmark = BROWSER

NOW = datetime(2026, 11, 27, 15, 0, tzinfo=UTC)

BASE = """\
policy "trial"
  segment everyone otherwise
  business hours mon-sun 00:00-23:59
  plan for everyone
    step after 1h via email template "payment_failed"
    step after 2d via email template "final_notice"
    give up after 14d
  end
end
"""

EXPERIMENT = """\
  experiment "first touch"
    arm control 40%
    arm sms_first 30%
      plan for everyone
        step after 1h via sms template "reminder_short"
        step after 2d via email template "final_notice"
        give up after 14d
      end
    end
    arm whatsapp_first 30%
      plan for everyone
        step after 1h via whatsapp template "reminder_short"
        step after 2d via email template "final_notice"
        give up after 14d
      end
    end
    guardrail opt_out 2%
  end
"""


class Site:
    def __init__(self, url: str, app: Any) -> None:
        self.url = url
        self.app = app


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    from flask_migrate import upgrade

    from app import create_app
    from app.accounts.users import create_user
    from app.recovery.policies import activate_text
    from config import TestingConfig

    db_file = tmp_path_factory.mktemp("experiments") / "recoup.db"
    app = create_app(TestingConfig, SQLALCHEMY_DATABASE_URI=f"sqlite:///{db_file}", WTF_CSRF_ENABLED=True)
    with app.app_context():
        upgrade()
        create_user("ana.author@example.com", PASSWORD, ["author"], name="Ana Author")
        create_user("bo.approver@example.com", PASSWORD, ["approver"], name="Bo Approver")
        create_user("cy.auditor@example.com", PASSWORD, ["auditor"], name="Cy Auditor")
        activate_text("trial", BASE, actor=None, note="set-up")
        history(400)
    with LiveServer(app) as server:
        yield Site(server.url, app)


def history(n: int) -> None:
    """Four weeks of closed cases, a quarter recovered: what the power calculator plans with."""
    from app.extensions import db
    from app.models.types import utcnow
    from tests.builders import make_case, make_customer, make_transaction

    now = utcnow()
    for i in range(n):
        customer = make_customer(email=f"past{i}@example.com", country="US")
        opened = now - timedelta(days=1 + i % 27)
        tx = make_transaction(customer=customer, gateway_transaction_id=f"past-{i}", failed_at=opened)
        make_case(transaction=tx, customer=customer, opened_at=opened,
                  state="recovered" if i % 4 == 0 else "expired", closed_at=opened + timedelta(days=2))
    db.session.commit()


def warp(app: Any, start: int, n: int, *, opt_out_arm: str | None = None) -> None:
    """Time-warped traffic: ``n`` new customers' failed payments are planned by the real planner, their first
    messages go; some pay. Customers of ``opt_out_arm`` mostly opt out after their first message."""
    import sqlalchemy as sa

    from app.extensions import db
    from app.models import ArmAssignment, ConsentEvent, OutboxMessage, RecoveryCase
    from app.recovery.planning import plan_cases
    from tests.builders import make_case, make_customer, make_transaction

    with app.app_context():
        cases = []
        for i in range(start, start + n):
            customer = make_customer(email=f"c{i}@example.com", phone_e164=f"+1415556{i:04d}", country="US",
                                     timezone_explicit="America/New_York")
            tx = make_transaction(customer=customer, gateway_transaction_id=f"warp-{i}", amount_minor=4000,
                                  failed_at=NOW - timedelta(minutes=5))
            cases.append(make_case(transaction=tx, customer=customer))
        db.session.commit()
        ids = [c.id for c in cases]
        plan_cases(ids, now=NOW)
        arms = dict(db.session.execute(sa.select(ArmAssignment.case_id, ArmAssignment.arm)
                                       .where(ArmAssignment.case_id.in_(ids))).all())
        for message in db.session.scalars(sa.select(OutboxMessage).where(OutboxMessage.case_id.in_(ids),
                                                                         OutboxMessage.step_n == 1)):
            message.state = "sent"
            message.sent_at = NOW + timedelta(hours=1)
        for k, case_id in enumerate(ids):
            case = db.session.get(RecoveryCase, case_id)
            arm = arms.get(case_id)
            paid_every = {"sms_first": 2, "whatsapp_first": 4}.get(arm or "", 4)
            if k % paid_every == 0:
                case.state = "recovered"
                case.recovered_amount_minor = 4000
                case.closed_at = NOW + timedelta(hours=5)
            if arm == opt_out_arm and k % 3 != 0:
                db.session.add(ConsentEvent(customer_id=case.customer_id, channel="whatsapp", action="opt_out",
                                            source="whatsapp_stop", at=NOW + timedelta(hours=2)))
        db.session.commit()


def test_write_run_guard_and_promote_an_experiment(site: Site, browser: Any) -> None:
    from playwright.sync_api import expect

    with_experiment = BASE.replace("\nend\n", "\n" + EXPERIMENT + "end\n")
    broken = with_experiment.replace("arm whatsapp_first 30%", "arm whatsapp_first 20%")

    # -- the author writes the block; a bad split is shown at its line; the power calculator answers
    context, page = sign_in(browser, site, "ana.author@example.com")
    page.goto(f"{site.url}/admin/policies/edit/trial")
    editor = page.locator("#source")
    editor.fill(broken)
    problem = page.locator(".pe-problem-error").first
    problem.wait_for()
    assert "100%" in problem.inner_text() and "Line" in problem.inner_text()
    shot(page, "experiment-01-bad-split")
    editor.fill(with_experiment)
    page.locator(".pe-ok").wait_for()
    power = page.locator("#experiment-power")
    expect(power).to_be_visible()
    assert "cases in all arms" in power.inner_text() and "days" in power.inner_text()
    shot(page, "experiment-02-power")
    page.click("#save-draft")
    page.locator(".alert-success").wait_for()
    page.fill("#note", "Test SMS and WhatsApp as the first touch")
    page.click("#submit-approval")
    page.wait_for_url("**/admin/policies/history/trial")
    context.close()

    # -- the approver approves and activates: the experiment starts
    context, page = sign_in(browser, site, "bo.approver@example.com")
    page.goto(f"{site.url}/admin/policies/history/trial")
    row = page.locator("#version-2")
    row.locator("input[name=reason]").fill("A fair test, guarded by opt-outs")
    row.locator("button:has-text('Approve')").click()
    page.locator(".alert-success").wait_for()
    page.locator("#version-2 button:has-text('Activate')").click()
    page.locator(".alert-success").wait_for()
    page.goto(f"{site.url}/admin/experiments/")
    assert "first touch" in page.locator("#experiments").inner_text()
    page.click("text=first touch")
    assert page.locator("#experiment-status").inner_text().strip() == "running"
    assert "No result yet" in page.locator("#experiment-waiting").inner_text()
    detail = page.url

    # -- time passes: cases arrive, are planned into arms, their first messages go; the results fill in
    warp(site.app, 0, 300)
    page.goto(detail)
    arms = page.locator("#arms")
    assert arms.locator("tr[data-arm=sms_first]").count() == 1
    counted = int(arms.locator("tr[data-arm=control] td").nth(2).get_attribute("data-value"))
    assert counted > 60
    expect(page.locator("#comparisons tbody tr")).to_have_count(6)  # 2 variants x 3 measures
    assert "matches the plan" in page.locator("#srm").inner_text()
    page.wait_for_function("() => !!document.querySelector('#experiment-chart')")
    assert canvas_drawn(page, "#experiment-chart")
    shot(page, "experiment-03-results")
    page.click("#cuped-toggle a")
    assert "CUPED, θ =" in page.locator("#cuped-toggle").inner_text()
    expect(page.locator("#comparisons tbody tr")).to_have_count(6)
    page.click("#cuped-toggle a")
    assert "cuped" not in page.url
    # a case says which arm its plan drew, and leads to the results
    with site.app.app_context():
        import sqlalchemy as sa

        from app.extensions import db
        from app.models import ArmAssignment

        case_id, arm = db.session.execute(sa.select(ArmAssignment.case_id, ArmAssignment.arm)
                                          .where(ArmAssignment.arm == "sms_first").limit(1)).one()
    page.goto(f"{site.url}/admin/cases/timeline/{case_id}")
    assert "Experiment “first touch”: arm sms_first" in page.locator(".case-experiment").inner_text()
    page.click(".case-experiment a")
    assert page.url == detail

    # -- WhatsApp first makes customers opt out: the periodic check's guardrail stops it
    warp(site.app, 300, 500, opt_out_arm="whatsapp_first")
    with site.app.app_context():
        from workers.jobs import check_experiments

        assert check_experiments()["stopped"] == ["first touch/whatsapp_first"]
    page.goto(detail)
    stopped = page.locator("#arms tr[data-arm=whatsapp_first]")
    assert "stopped" in stopped.inner_text()
    assert "guardrail" in page.locator(".stopped-arm").inner_text()
    assert "stop: variant whatsapp_first harms opt_out" in page.locator("#guardrails").inner_text()
    shot(page, "experiment-04-guardrail-stopped")
    check_accessibility(page, "experiment-results")
    page.set_viewport_size({"width": 375, "height": 800})
    shot(page, "experiment-05-results-375")
    page.set_viewport_size({"width": 1280, "height": 900})
    context.close()

    # -- an auditor reads and may change nothing; an author may not stop a test
    experiment_id = detail.rstrip("/").rsplit("/", 1)[1]
    context, page = sign_in(browser, site, "cy.auditor@example.com")
    page.goto(detail)
    assert page.locator("#stop-form, #promote-form").count() == 0
    assert post_from_page(page, f"/admin/experiments/{experiment_id}/stop", {"why": "sneaky"}) == 403
    assert post_from_page(page, f"/admin/experiments/{experiment_id}/promote", {"arm": "sms_first"}) == 403
    context.close()
    context, page = sign_in(browser, site, "ana.author@example.com")
    page.goto(detail)
    assert page.locator("#stop-form").count() == 0
    assert post_from_page(page, f"/admin/experiments/{experiment_id}/stop", {"why": "sneaky"}) == 403

    # -- the author promotes the winner: a new version waits for approval
    sms = page.locator("#comparisons tr[data-metric=recovery_rate][data-variant=sms_first]")
    assert "better" in sms.locator(".verdict").inner_text()
    page.select_option("#promote-arm", "sms_first")
    page.fill("#promote-note", "SMS first recovers more")
    page.click("#promote-form button")
    page.wait_for_url("**/admin/policies/version/*")
    assert "waits for approval" in page.locator(".alert-success").inner_text()
    source = page.locator("textarea.pe-input").input_value()
    assert "experiment" not in source and 'via sms template "reminder_short"' in source
    shot(page, "experiment-06-promoted-draft")
    context.close()

    # -- the approver approves and activates the winner; the audit log tells the whole story
    context, page = sign_in(browser, site, "bo.approver@example.com")
    page.goto(f"{site.url}/admin/policies/history/trial")
    row = page.locator("#version-3")
    row.locator("input[name=reason]").fill("The evidence holds")
    row.locator("button:has-text('Approve')").click()
    page.locator(".alert-success").wait_for()
    page.locator("#version-3 button:has-text('Activate')").click()
    page.locator(".alert-success").wait_for()
    page.goto(detail)
    assert "winner promoted" in page.locator("#experiment-status").inner_text()
    assert "version 3" in page.content()
    context.close()
    context, page = sign_in(browser, site, "cy.auditor@example.com")
    page.goto(f"{site.url}/admin/audit_log/")
    log = page.content()
    for action in ("experiment.started", "experiment.arm_stopped", "experiment.promoted",
                   "policy.version_approved", "policy.activated"):
        assert action in log, action
    shot(page, "experiment-07-audit")
    context.close()
