"""A whole version tested against the active one, from the version page: authors write the test (a new version with
the experiment, waiting for approval); others may not; what an arm cannot say is refused in words, writing nothing."""

from __future__ import annotations

import re

import sqlalchemy as sa

import dsl
from app.extensions import db
from app.models import AuditEntry, Experiment, Policy, PolicyVersion
from tests.admin.world import STANDARD

CANDIDATE = STANDARD.replace("step after 1d via sms, whatsapp", "step after 12h via sms, whatsapp")
NEW_SEGMENT = STANDARD.replace(
    "  segment repeat     when customer.successful_payments >= 1\n",
    "  segment repeat     when customer.successful_payments >= 1\n  segment lapsed     otherwise\n",
).replace("plan for first_time, repeat", "plan for first_time, repeat, lapsed")


def submitted(client, source: str, note: str) -> PolicyVersion:  # type: ignore[no-untyped-def]
    client.post("/admin/policies/submit/standard", data={"source": source, "note": note})
    db.session.expire_all()
    return db.session.scalar(sa.select(PolicyVersion).where(PolicyVersion.note == note))


def versions() -> int:
    return db.session.scalar(sa.select(sa.func.count()).select_from(PolicyVersion))


def test_an_author_writes_the_test_and_it_runs_as_an_experiment(client, auth, world):
    auth.login("author")
    candidate = submitted(client, CANDIDATE, "earlier SMS")
    page = client.get(f"/admin/policies/version/{candidate.id}").get_data(as_text=True)
    assert 'id="challenge-form"' in page and "Test against the active version (v1): share" in page
    assert 'name="share"' in page and 'value="10"' in page

    done = client.post(f"/admin/policies/challenge/{candidate.id}", data={"share": "10"}, follow_redirects=True)
    html = done.get_data(as_text=True)
    assert done.request.path == "/admin/policies/history/standard"
    assert "Version 3 tests version 2 against the active version" in html
    db.session.expire_all()
    test = db.session.scalar(sa.select(PolicyVersion).where(PolicyVersion.number == 3))
    assert test.status == "pending_approval" and test.based_on_version_id == candidate.id
    assert test.note == "test v2 against v1 at 10%"
    assert '  experiment "v2 against v1"\n    arm current 90%\n    arm candidate 10%\n' in test.source
    assert dsl.parse(dsl.promote_arm(test.source, "candidate")) == dsl.parse(CANDIDATE)
    entries = db.session.scalars(sa.select(AuditEntry).where(AuditEntry.action == "policy.version_submitted",
                                                             AuditEntry.target_id == str(test.id))).all()
    assert len(entries) == 1
    auth.logout()

    auth.login("approver")
    client.post(f"/admin/policies/approve/{test.id}", data={"reason": "a fair test"})
    client.post(f"/admin/policies/activate/{test.id}")
    db.session.expire_all()
    assert db.session.scalar(sa.select(Policy).where(Policy.name == "standard")).active_version.number == 3
    experiment = db.session.scalar(sa.select(Experiment))
    assert experiment is not None and experiment.name == "v2 against v1"
    assert [a["name"] for a in experiment.arms] == ["current", "candidate"]


def test_only_authors_may_write_a_test(client, auth, world):
    auth.login("author")
    candidate = submitted(client, CANDIDATE, "earlier SMS")
    auth.logout()
    for role in ("operator", "approver", "auditor"):
        auth.login(role)
        assert client.post(f"/admin/policies/challenge/{candidate.id}", data={"share": "10"}).status_code == 403
        assert 'id="challenge-form"' not in client.get(f"/admin/policies/version/{candidate.id}").get_data(
            as_text=True)
        auth.logout()
    assert versions() == 2


def test_a_candidate_with_other_segments_is_refused_in_words_and_nothing_is_written(client, auth, world):
    auth.login("author")
    candidate = submitted(client, NEW_SEGMENT, "a lapsed segment")
    before = db.session.scalar(sa.select(sa.func.count()).select_from(AuditEntry))
    page = client.post(f"/admin/policies/challenge/{candidate.id}", data={"share": "10"}, follow_redirects=True)
    html = page.get_data(as_text=True)
    assert "Version 2 cannot be tested against the active version" in html
    line = NEW_SEGMENT.splitlines().index("  segment lapsed     otherwise") + 1
    assert re.search(rf"v2:{line}:3: this version&#39;s segments differ from the active version&#39;s", html), html
    db.session.expire_all()
    assert versions() == 2
    assert db.session.scalar(sa.select(sa.func.count()).select_from(AuditEntry)) == before


def test_a_bad_share_is_refused_and_a_second_try_works(client, auth, world):
    auth.login("author")
    candidate = submitted(client, CANDIDATE, "earlier SMS")
    for share in ("0", "100", "ten", ""):
        html = client.post(f"/admin/policies/challenge/{candidate.id}", data={"share": share},
                           follow_redirects=True).get_data(as_text=True)
        assert "a percentage above 0 and below 100" in html
    assert versions() == 2
    client.post(f"/admin/policies/challenge/{candidate.id}", data={"share": "12.5"})
    client.post(f"/admin/policies/challenge/{candidate.id}", data={"share": "25"})
    db.session.expire_all()
    notes = db.session.scalars(sa.select(PolicyVersion.note).where(PolicyVersion.number > 2)
                               .order_by(PolicyVersion.number)).all()
    assert notes == ["test v2 against v1 at 12.5%", "test v2 against v1 at 25%"]


def test_the_active_version_and_a_rejected_one_offer_no_test(client, auth, world):
    auth.login("author")
    active = db.session.scalar(sa.select(PolicyVersion).where(PolicyVersion.number == 1))
    assert 'id="challenge-form"' not in client.get(f"/admin/policies/version/{active.id}").get_data(as_text=True)
    html = client.post(f"/admin/policies/challenge/{active.id}", data={"share": "10"},
                       follow_redirects=True).get_data(as_text=True)
    assert "only a version that is approved or waiting for approval can be tested" in html
    assert versions() == 1
