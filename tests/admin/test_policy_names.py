"""Issue 15, low finding: "the policy-name rule is bypassed via the edit URL". The "new policy" form checked the name,
but a POST to /admin/policies/edit/<name> or /submit/<name> made a policy under any name. The rule now lives in the
service (app.recovery.policies.POLICY_NAME), which every way of making a policy goes through."""

from __future__ import annotations

from urllib.parse import quote

import pytest
import sqlalchemy as sa

from app.extensions import db
from app.models import AuditEntry, Policy
from app.recovery import policies
from tests.admin.browserlike import flashes
from tests.admin.world import STANDARD

BAD = ["Bad Name", "UPPER", "9lives", "with.dot", "ünïcode", "-dash-first", "x" * 65, "semi;colon"]


def _text(name: str) -> str:
    return STANDARD.replace('policy "standard"', f'policy "{name}"')


def _counts() -> tuple[int, int]:
    db.session.expire_all()
    return (db.session.scalar(sa.select(sa.func.count()).select_from(Policy)),
            db.session.scalar(sa.select(sa.func.count()).select_from(AuditEntry)
                              .where(AuditEntry.action.like("policy.%"))))


@pytest.mark.parametrize("name", BAD)
def test_the_edit_url_cannot_make_a_policy_with_a_bad_name(client, auth, name):
    auth.login("author")
    before = _counts()
    response = client.post(f"/admin/policies/edit/{quote(name)}", data={"source": _text("x")})
    assert response.status_code == 302 and response.headers["Location"].endswith("/admin/policies/")
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    said = " ".join(flashes(page))
    assert "is not a policy name" in said and "lower-case letters" in said and "Nothing was saved" in said, said
    assert _counts() == before  # no policy, no audit entry


@pytest.mark.parametrize("name", ["Bad Name", "9lives"])
def test_the_submit_url_cannot_either(client, auth, name):
    auth.login("author")
    before = _counts()
    response = client.post(f"/admin/policies/submit/{quote(name)}", data={"source": _text("x"), "note": "n"},
                           follow_redirects=True)
    assert response.status_code == 200
    assert any("is not a policy name" in f for f in flashes(response.get_data(as_text=True)))
    assert _counts() == before


def test_the_new_form_says_the_same_and_a_second_try_with_a_good_name_works(client, auth):
    auth.login("author")
    page = client.post("/admin/policies/new", data={"name": "9!"}, follow_redirects=True).get_data(as_text=True)
    assert any("“9!” is not a policy name" in f for f in flashes(page))
    response = client.post("/admin/policies/new", data={"name": "Holiday Season"})
    assert response.headers["Location"].endswith("/admin/policies/edit/holiday_season")
    assert db.session.scalar(sa.select(Policy).where(Policy.name == "holiday_season")) is not None


def test_a_good_name_through_the_edit_url_is_still_a_new_draft(client, auth):
    """The rule is the same whichever way: a well-formed name typed into the edit URL makes a draft, as before."""
    auth.login("author")
    response = client.post("/admin/policies/edit/spring-2027", data={"source": _text("spring-2027")})
    assert response.status_code == 302 and response.headers["Location"].endswith("/admin/policies/edit/spring-2027")
    db.session.expire_all()
    assert db.session.scalar(sa.select(Policy.draft_source).where(Policy.name == "spring-2027")) is not None


def test_not_an_author_is_still_refused_first(client, auth):
    auth.login("auditor")
    assert client.post("/admin/policies/edit/Bad%20Name", data={"source": "x"}).status_code == 403


def test_the_service_refuses_it_for_every_caller(app):
    before = _counts()
    for make in (lambda n: policies.save_draft(n, _text("x"), actor=None),
                 lambda n: policies.activate_text(n, _text("x"), actor=None, note="set-up")):
        with pytest.raises(policies.PolicyNameError) as refused:
            make("Bad Name")
        assert "'Bad Name' is not a policy name" in str(refused.value)
        db.session.rollback()
    assert _counts() == before
    assert policies.check_policy_name("standard") == "standard"
