"""Issue 15, low finding: "every role reads all customer PII". Operators (who work cases and talk to customers) and
admins see customers' names, emails, phones and addresses whole; authors, approvers and auditors see them masked on
every admin page, in every details page and every CSV export, in the audit log's details, and cannot search by them
(a search would confirm that someone is a customer). Each role signs in through the real sign-in form and reads
every admin page over HTTP; the pages are scanned for the customer's details as stored."""

from __future__ import annotations

import csv
import io
import re
import uuid
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import pytest
import sqlalchemy as sa

from app.accounts import pii
from app.extensions import db
from app.models import AuditEntry, EscalationTask, MessageEvent, OutboxMessage, PolicyVersion
from app.outbox.reconcile import reclaim_stale
from tests.admin.browserlike import PASSWORD
from tests.admin.world import build_world
from tests.builders import make_case, make_customer, make_message, make_transaction

EMAIL = "zelda.quimby@example.org"
PHONE = "+447700903456"
#: what must never reach a reader who sees customers masked, in any form the pages could show it
SECRETS = (EMAIL, "zelda.quimby", "Zelda", "Quimby", PHONE, "7700903456", "7700 903456", "Tewkesbury", "GL20 5AB",
           "Fairweather Ltd")
MASKED_ROLES = ("author", "approver", "auditor")
FULL_ROLES = ("operator", "admin")
#: lists whose rows name customers, and what the audit log exports
LISTS = ("cases", "customers", "transactions", "messages", "audit_log")
DETAILS = {"customers": "customer", "cases": "case", "transactions": "transaction", "messages": "message"}


class Zelda:
    """One customer with every kind of personal data, on every page that can show it."""

    def __init__(self) -> None:
        self.customer = make_customer(first_name="Zelda", last_name="Quimby", email=EMAIL, phone_e164=PHONE,
                                      phone_raw="07700 903456", company="Fairweather Ltd", country="GB",
                                      region="GLS", city="Tewkesbury", postal_code="GL20 5AB",
                                      timezone="Europe/London", timezone_candidates=["Europe/London"])
        self.transaction = make_transaction(customer=self.customer, order_id="ORDER-ZQ-77",
                                            gateway_transaction_id="ZQ-TX-1", amount_minor=18900, currency="GBP")
        self.case = make_case(transaction=self.transaction)
        # a message whose worker died mid-send: the review queue, with the address it was sent to
        started = datetime.now(UTC) - timedelta(hours=2)
        self.message = make_message(case=self.case, channel="email", address=EMAIL, claimed_by="dead:1:x",
                                    claimed_at=started, attempts=1, state="delivering",
                                    error_text=f"550 5.1.1 <{EMAIL}>: mailbox busy, call {PHONE}")
        db.session.add(MessageEvent(message_id=self.message.id, kind="attempt", occurred_at=started, provider_payload={
            "channel": "email", "to": EMAIL, "n": 1, "started_at": started.isoformat(), "by": "dead:1:x",
            "body": "Hi Zelda Quimby"}))
        failed = make_message(case=self.case, channel="sms", address=PHONE, state="scheduled",
                              idempotency_key=f"case:{self.case.id}:sms")
        self.failed_id = failed.id
        self.task = EscalationTask(case_id=self.case.id, team="collections", state="open")
        db.session.add(self.task)
        db.session.commit()
        assert reclaim_stale() == 1
        db.session.expire_all()
        assert db.session.get(OutboxMessage, self.message.id).state == "review"


@pytest.fixture
def zelda(app) -> Zelda:  # type: ignore[no-untyped-def]
    """The admin world, Zelda, and what an operator did about her through the admin (a note with her phone, a pause
    whose reason names her email, an export searched by her email): each lands in the audit log or the timeline."""
    build_world()  # policies, templates, other customers' cases, messages, escalations, a gateway account
    z = Zelda()
    operator = app.test_client()
    sign_in(operator, "operator")
    assert operator.post(f"/admin/escalations/{z.task.id}/note",
                         data={"note": f"Called her on {PHONE}"}).status_code == 302
    assert operator.post(f"/admin/cases/{z.case.id}/pause",
                         data={"reason": f"she asked by mail from {EMAIL}"}).status_code == 302
    assert operator.get(f"/admin/customers/export/csv/?search={EMAIL}").status_code == 200
    db.session.expire_all()
    return z


def sign_in(client, role: str) -> str:  # type: ignore[no-untyped-def]
    """A new person with ``role`` signs in through the sign-in form (this app checks no CSRF token: TestingConfig)."""
    from app.accounts.users import create_user

    email = f"{role}-{uuid.uuid4().hex[:6]}@example.com"
    create_user(email, PASSWORD, [role])
    response = client.post("/login", data={"email": email, "password": PASSWORD})
    assert response.status_code == 302 and "/admin" in response.headers["Location"], response.status_code
    return email


def _pages(app, z: Zelda) -> list[str]:  # type: ignore[no-untyped-def]
    """Every admin page a GET opens (the URL map, as test_roles walks it), each details page of Zelda's rows, every
    list's CSV export."""
    values = {"case_id": z.case.id, "task_id": z.task.id, "name": "standard", "key": "contact_windows",
              "version_id": db.session.scalar(sa.select(sa.func.min(PolicyVersion.id))), "message_id": z.message.id}
    ids = {"customers": z.customer.id, "cases": z.case.id, "transactions": z.transaction.id,
           "messages": z.message.id, "audit_log": db.session.scalar(sa.select(sa.func.max(AuditEntry.id)))}
    urls: list[str] = []
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/admin") or "static" in rule.endpoint or "GET" not in rule.methods:
            continue
        if rule.endpoint.endswith(("create_view", "edit_view", "delete_view", "action_view", "ajax_update")) \
                or "ajax" in rule.rule or "export" in rule.rule:
            continue
        url = re.sub(r"<(?:[^:>]+:)?([^>]+)>", lambda m: str(values.get(m.group(1), 1)), rule.rule)
        if rule.endpoint.endswith("details_view"):
            view = rule.endpoint.split(".")[0]
            url += f"?id={ids.get(view, 1)}"
        urls.append(url)
    urls += ["/admin/escalations/?state=all", "/admin/messages/?page_size=100", "/admin/cases/?page_size=100"]
    urls += [f"/admin/{view}/export/csv/" for view in LISTS]
    return urls


def _read_everything(app, role: str, z: Zelda) -> dict[str, str]:  # type: ignore[no-untyped-def]
    client = app.test_client()
    sign_in(client, role)
    seen: dict[str, str] = {}
    for url in _pages(app, z):
        response = client.get(url)
        if response.status_code in (403, 404, 302):  # not for this role, or a Flask-Admin hop
            continue
        assert response.status_code == 200, f"{role}: GET {url} gave {response.status_code}"
        seen[url] = response.get_data(as_text=True)
    return seen


@pytest.mark.parametrize("role", MASKED_ROLES)
def test_a_role_that_does_not_work_with_customers_never_receives_their_details(app, zelda, role):
    seen = _read_everything(app, role, zelda)
    customer_pages = {"/admin/", "/admin/cases/", f"/admin/cases/timeline/{zelda.case.id}",
                      f"/admin/cases/details/?id={zelda.case.id}", "/admin/customers/",
                      f"/admin/customers/details/?id={zelda.customer.id}", "/admin/transactions/",
                      f"/admin/transactions/details/?id={zelda.transaction.id}", "/admin/messages/?page_size=100",
                      f"/admin/messages/details/?id={zelda.message.id}", "/admin/review/",
                      "/admin/escalations/?state=all"}
    assert customer_pages <= set(seen), customer_pages - set(seen)  # every page that shows customers was read
    assert len(seen) > 20, sorted(seen)
    leaks = [(url, secret) for url, text in seen.items() for secret in SECRETS if secret in text]
    assert not leaks, f"{role} received: {leaks[:10]}"
    # the pages are still there, masked: the case page, the customer list, the review queue
    case_page = seen[f"/admin/cases/timeline/{zelda.case.id}"]
    assert "z***@example.org" in case_page and "+44 •••• ••3456" in case_page and "Z. Q." in case_page
    assert "z***@example.org" in seen["/admin/review/"]
    assert "Z. Q." in seen["/admin/escalations/?state=all"] and "Called her on +44 •••• ••3456" in \
        seen["/admin/escalations/?state=all"]
    assert "she asked by mail from z***@example.org" in case_page  # the operator's reason, masked
    if role == "auditor":  # exports are theirs too, masked; the audit log stays whole otherwise
        rows = list(csv.DictReader(io.StringIO(seen["/admin/customers/export/csv/"])))
        mine = next(r for r in rows if r["Email"] == "z***@example.org")
        assert mine["Name"] == "Z. Q." and mine["Phone"] == "'+44 •••• ••3456"  # a leading + is quoted for spreadsheets
        audit = seen["/admin/audit_log/"]
        assert "customers.export" in audit and "z***@example.org" in audit
        assert re.search(r"operator-[0-9a-f]{6}@example\.com", audit)  # who did it: staff are not masked
        assert "escalation.note" in audit and "case.pause" in audit
        assert 'data-ok="1"' in seen["/admin/audit_log/verify"]  # masking what is shown leaves the log intact


@pytest.mark.parametrize("role", FULL_ROLES)
def test_operators_and_admins_see_customers_whole(app, zelda, role):
    seen = _read_everything(app, role, zelda)
    case_page = seen[f"/admin/cases/timeline/{zelda.case.id}"]
    assert EMAIL in case_page and PHONE in case_page and "Zelda Quimby" in case_page
    assert EMAIL in seen["/admin/customers/"] and PHONE in seen["/admin/customers/"]
    details = seen[f"/admin/customers/details/?id={zelda.customer.id}"]
    assert "Tewkesbury" in details and "GL20 5AB" in details
    assert EMAIL in seen["/admin/review/"] and f"Called her on {PHONE}" in seen["/admin/escalations/?state=all"]
    rows = list(csv.DictReader(io.StringIO(seen["/admin/customers/export/csv/"])))
    assert any(r["Email"] == EMAIL and r["Phone"] == PHONE for r in rows)
    assert EMAIL in seen[f"/admin/messages/details/?id={zelda.message.id}"]


def _case_rows(client, query: str) -> set[int]:  # type: ignore[no-untyped-def]
    page = client.get(f"/admin/cases/?search={quote(query)}").get_data(as_text=True)
    return {int(n) for n in re.findall(r'href="/admin/cases/timeline/(\d+)"', page)}


@pytest.mark.parametrize("role", MASKED_ROLES)
def test_searching_by_a_customers_details_confirms_nothing(app, zelda, role):
    """Decided: a reader who sees customers masked finds a case by its number, order id or transaction id, never
    by name, email or phone: a search by email that answered would tell an author that this person is a customer.
    The customers list offers them no search at all (it searches only personal data)."""
    client = app.test_client()
    sign_in(client, role)
    for query in (EMAIL, "zelda", "Quimby", PHONE, "7700903456"):
        assert _case_rows(client, query) == set(), (role, query)
    assert _case_rows(client, "no.one@example.org") == set()  # the same answer as for a stranger
    assert _case_rows(client, "ORDER-ZQ-77") == {zelda.case.id}  # what is not personal still finds the case
    assert _case_rows(client, f"#{zelda.case.id}") == {zelda.case.id}
    cases = client.get("/admin/cases/").get_data(as_text=True)
    assert "Case number, order or transaction id" in cases and "Name, email" not in cases
    customers = client.get(f"/admin/customers/?search={EMAIL}").get_data(as_text=True)
    assert 'type="text" name="search"' not in customers  # no search box
    everyone = client.get("/admin/customers/").get_data(as_text=True)
    assert customers.count("<tr") == everyone.count("<tr")  # the search narrowed nothing
    if role == "auditor":
        export = client.get(f"/admin/cases/export/csv/?search={EMAIL}").get_data(as_text=True)
        assert len(list(csv.DictReader(io.StringIO(export)))) == 0


def test_an_operator_still_searches_by_email_phone_and_name(app, zelda):
    client = app.test_client()
    sign_in(client, "operator")
    for query in (EMAIL, "zelda quimby", PHONE, "07700 903456"):
        assert zelda.case.id in _case_rows(client, query), query
    customers = client.get(f"/admin/customers/?search={EMAIL}").get_data(as_text=True)
    assert 'type="text" name="search"' in customers and EMAIL in customers


def test_a_masked_list_is_not_ordered_by_what_it_hides(app, zelda):
    """Sorting the customers by email would tell the hidden value's place among the others: for a masked reader
    the list keeps its default order whatever the sort link asks."""
    make_customer(first_name="Aaron", last_name="Aardvark", email="aaa@example.org")
    db.session.commit()
    client = app.test_client()
    sign_in(client, "auditor")
    plain = client.get("/admin/customers/").get_data(as_text=True)
    sort = re.search(r'href="([^"]*sort=(\d+)[^"]*)"[^>]*>\s*Email', plain)
    assert sort, "the Email column offers a sort link"
    column = sort.group(2)
    for desc in ("0", "1"):
        ordered = client.get(f"/admin/customers/?sort={column}&desc={desc}").get_data(as_text=True)
        order = re.findall(r"([a-z]\*\*\*@example\.\w+)", ordered)
        assert order == re.findall(r"([a-z]\*\*\*@example\.\w+)", plain), desc


@pytest.mark.parametrize(("value", "kind", "masked"), [
    ("jane.doe@example.com", "email", "j***@example.com"),
    ("+447700903456", "phone", "+44 •••• ••3456"),
    ("+13055550142", "phone", "+1 •••• ••0142"),
    ("Ana María Pérez", "name", "A. M. P."),
    ("Ana Pérez 3", "name", "A. P."),  # initials of words only: a number in a name is not shown either
    ("ana@example.com", "name", "a***@example.com"),  # a customer with no name is named by their email
    ("Tewkesbury", "place", "T•••"),
    ("GL20 5AB", "postal", "G•••"),
    ("203.0.113.7", "ip", "203.0.113.•"),
    ("2001:db8::1", "ip", "2001:0db8:•"),
    ("+44 7700 903456", "contact", "+44 •••• ••3456"),
    ("lucia@example.es", "contact", "l***@example.es"),
    (f"550 <{EMAIL}> from 10.0.0.9, call 07700 903456 on 2026-12-06 12:00", "text",
     "550 <z***@example.org> from 10.0.0.•, call •••• ••3456 on 2026-12-06 12:00"),
])
def test_the_masking_rules(value, kind, masked):
    assert pii.MASKED.value(kind, value) == masked
    assert pii.FULL.value(kind, value) == value
    assert pii.MASKED.value(kind, None) is None and pii.MASKED.value(kind, "") == ""


def test_who_sees_what():
    assert pii.mask_for(["operator"]).full and pii.mask_for(["admin"]).full
    assert pii.mask_for(["auditor", "operator"]).full
    for role in MASKED_ROLES:
        assert not pii.mask_for([role]).full
    assert not pii.mask_for([]).full
    details = {"to": EMAIL, "query": {"search": f"{PHONE}"}, "case": 7, "transaction": "9000000123",
               "reason": f"asked from {EMAIL}"}
    assert pii.MASKED.audit_details("recovery_case", details) == {
        "to": "z***@example.org", "query": {"search": "+44 •••• ••3456"}, "case": 7, "transaction": "9000000123",
        "reason": "asked from z***@example.org"}
    staff = {"email": "new.person@example.com", "roles": ["author"]}
    assert pii.MASKED.audit_details("user", staff) == staff
