"""The quarantine page: gateway records refused at ingest, with their reasons. Operators, admins and auditors read it
(auditors with the customer's details masked); operators dismiss a record (audited); anyone else gets 403.

The records come in through a real fetch from the NMI simulator; the page is opened over HTTP by a signed-in user."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from app.accounts.gateway_accounts import save_account
from app.extensions import db
from app.ingest.transactions import fetch_account
from app.models import AuditEntry, QuarantinedRecord, User
from sandbox.nmi.server import NmiSimulator

CLIENT = {"timeout": [1.0, 2.0], "backoff": 0.01, "max_backoff": 0.05, "page_size": 200}
EMAIL = "zelda.quarantine@example.org"


@pytest.fixture(scope="module")
def nmi():
    with NmiSimulator(seed=21) as sim:
        yield sim


@pytest.fixture
def held(app, nmi):  # type: ignore[no-untyped-def]
    """Two refused records (a CRLF email, a negative amount) and a good one, fetched for real."""
    nmi.clear()
    nmi.reset()
    crlf = nmi.add_transaction(condition="failed", decline_code="202",
                               customer={"email": f"{EMAIL}\r\nBcc: all@example.net", "first_name": "Zelda"})
    negative = nmi.add_transaction(condition="failed", decline_code="202", amount="-5.00")
    nmi.add_transaction(condition="failed", decline_code="202")
    account = save_account("nmi-quarantine", "nmi", api_url=f"{nmi.url}/api",
                           credentials={"security_key": nmi.security_key}, settings={"client": CLIENT})
    db.session.commit()
    assert fetch_account(account.id).result.quarantined == 2
    rows = {r.gateway_transaction_id: r for r in db.session.scalars(sa.select(QuarantinedRecord))}
    return rows[crlf.transaction_id], rows[negative.transaction_id]


def test_an_operator_sees_what_is_wrong_and_dismisses_a_record(client, auth, held):
    crlf, negative = held
    me = auth.login("operator")
    page = client.get("/admin/quarantine/")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    row = text[text.index(f'id="quarantined-{crlf.id}"'):]
    for expected in ("nmi-quarantine", crlf.gateway_transaction_id, "email", "line break", EMAIL, "Zelda",
                     f"/admin/quarantine/{crlf.id}/dismiss"):
        assert expected in row, expected
    assert f'id="quarantined-{negative.id}"' in text and "negative" in text

    done = client.post(f"/admin/quarantine/{crlf.id}/dismiss", follow_redirects=True)
    assert done.status_code == 200
    after = done.get_data(as_text=True)
    assert f"Record #{crlf.id} is dismissed" in after
    assert f'id="quarantined-{crlf.id}"' not in after and f'id="quarantined-{negative.id}"' in after
    dismissed = client.get("/admin/quarantine/?show=dismissed").get_data(as_text=True)
    assert f'id="quarantined-{crlf.id}"' in dismissed and f"dismissed by {me}" in dismissed
    assert f"/admin/quarantine/{crlf.id}/dismiss" not in dismissed
    db.session.expire_all()
    stored = db.session.get(QuarantinedRecord, crlf.id)
    assert stored.dismissed_at is not None and stored.dismissed_by == me
    [entry] = db.session.scalars(sa.select(AuditEntry).where(AuditEntry.action == "quarantine.dismiss")).all()
    assert entry.actor == me and entry.target_id == str(crlf.id) and entry.details["reasons"] == ["email"]

    again = client.post(f"/admin/quarantine/{crlf.id}/dismiss", follow_redirects=True).get_data(as_text=True)
    assert "nothing was changed" in again
    assert db.session.scalar(sa.select(sa.func.count()).select_from(AuditEntry)
                             .where(AuditEntry.action == "quarantine.dismiss")) == 1


def test_an_auditor_reads_it_masked_and_cannot_dismiss(client, auth, held):
    crlf, _ = held
    auth.login("auditor")
    page = client.get("/admin/quarantine/").get_data(as_text=True)
    assert f'id="quarantined-{crlf.id}"' in page and "line break" in page
    assert EMAIL not in page and "z***@example.org" in page and "Zelda" not in page  # the customer's details masked
    assert "/dismiss" not in page
    refused = client.post(f"/admin/quarantine/{crlf.id}/dismiss")
    assert refused.status_code == 403 and "Nothing was changed" in refused.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(QuarantinedRecord, crlf.id).dismissed_at is None


@pytest.mark.parametrize("role", ["author", "approver"])
def test_other_roles_get_403(client, auth, held, role):
    crlf, _ = held
    auth.login(role)
    assert client.get("/admin/quarantine/").status_code == 403
    assert client.post(f"/admin/quarantine/{crlf.id}/dismiss").status_code == 403
    db.session.expire_all()
    assert db.session.get(QuarantinedRecord, crlf.id).dismissed_at is None


def test_signed_out_goes_to_the_sign_in_page(client, held):
    answer = client.get("/admin/quarantine/")
    assert answer.status_code == 302 and "/login" in answer.headers["Location"]


def test_the_page_speaks_spanish(client, auth, held):
    me = auth.login("operator")
    db.session.execute(sa.update(User).where(User.email == me).values(locale="es"))
    db.session.commit()
    page = client.get("/admin/quarantine/").get_data(as_text=True)
    assert "Registros de la pasarela en cuarentena" in page and "Descartar" in page and "Qué está mal" in page
    crlf, _ = held
    done = client.post(f"/admin/quarantine/{crlf.id}/dismiss", follow_redirects=True).get_data(as_text=True)
    assert f"El registro #{crlf.id} queda descartado" in done
