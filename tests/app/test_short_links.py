"""Short payment links (/p/<code>) for SMS and WhatsApp: resolved on the server, as expiring and revocable as the
signed link they stand for, clicks recorded; and what the dispatcher sends carries them."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from app.extensions import db
from app.models import MessageEvent, PaymentLink
from app.models.types import utcnow
from app.outbox.run import dispatch_due
from app.payments.links import (
    SHORT_LENGTH,
    issue_payment_link,
    resolve_short_code,
    revoke_case_links,
    short_url,
    token_hash,
)
from app.web.pay import wrong_submissions
from tests.app.test_payments import make_paying_case, nmi, nmi_server, paying  # noqa: F401
from tests.builders import make_case, make_customer, make_message, make_transaction

NOW = datetime(2026, 11, 27, 15, 0, tzinfo=UTC)
SHORT = re.compile(rf"http://localhost/p/([0-9A-Za-z]{{{SHORT_LENGTH}}})")


def _short_link(app, case, message=None):
    token = issue_payment_link(case, app.config["SECRET_KEY"], message_id=message.id if message else None)
    db.session.commit()
    url = short_url(app.config["PUBLIC_BASE_URL"], token, app.config["SECRET_KEY"])
    return token, SHORT.fullmatch(url).group(1)


def test_a_short_link_is_ten_base62_characters_resolved_to_its_signed_link(app, client, paying, nmi):  # noqa: F811
    case = make_paying_case(paying, nmi)
    message = make_message(case=case, state="sent", channel="sms")
    token, code = _short_link(app, case, message)
    answer = client.get(f"/p/{code}")
    assert answer.status_code == 302 and answer.headers["Location"].endswith(f"/pay/{token}")
    assert answer.headers["Cache-Control"] == "no-store" and answer.headers["Referrer-Policy"] == "no-referrer"
    page = client.get(answer.headers["Location"])
    assert page.status_code == 200 and "Pay $249.00" in page.get_data(as_text=True)
    kinds = db.session.scalars(sa.select(MessageEvent.kind).where(MessageEvent.message_id == message.id)).all()
    assert kinds == ["clicked", "link_opened"]  # the click, like the tracking redirect records it, then the page


def test_the_database_keeps_only_a_hash_of_the_code(app, paying, nmi):  # noqa: F811
    case = make_paying_case(paying, nmi)
    _, code = _short_link(app, case)
    link = db.session.scalar(sa.select(PaymentLink))
    assert link.short_code_hash == token_hash(code)
    assert code not in repr([getattr(link, c.key) for c in PaymentLink.__table__.columns])
    assert resolve_short_code(code, "another-secret") is None  # the code alone cannot mint a link


def _same_page_as_the_long_link(client, token, code):
    long_form = client.get(f"/pay/{token}")
    short_form = client.get(f"/p/{code}", follow_redirects=True)
    assert short_form.status_code == long_form.status_code == 404
    assert short_form.get_data(as_text=True) == long_form.get_data(as_text=True)
    return short_form.get_data(as_text=True)


def test_an_expired_short_link_gives_the_page_of_an_expired_signed_link(app, client, paying, nmi):  # noqa: F811
    case = make_paying_case(paying, nmi)
    token, code = _short_link(app, case)
    db.session.execute(sa.update(PaymentLink).values(expires_at=utcnow() - timedelta(minutes=1)))
    db.session.commit()
    html = _same_page_as_the_long_link(client, token, code)
    assert "This payment link has expired" in html and "249" not in html


def test_a_revoked_short_link_gives_the_same_page_too(app, client, paying, nmi):  # noqa: F811
    case = make_paying_case(paying, nmi)
    token, code = _short_link(app, case)
    revoke_case_links(case.id)
    db.session.commit()
    assert "This payment link has expired" in _same_page_as_the_long_link(client, token, code)


def test_unknown_and_malformed_codes_get_the_unknown_link_page_and_are_throttled(app, client, paying):  # noqa: F811
    wrong_submissions.reset()
    for code in ("AAAAAAAAAA", "short", "x" * 40, "abc-def-gh"):
        answer = client.get(f"/p/{code}")
        assert answer.status_code == 404 and "This payment link is not available" in answer.get_data(as_text=True)
    for n in range(16):
        client.get(f"/p/guess{n:05d}")
    assert client.get("/p/ZZZZZZZZZZ").status_code == 429
    wrong_submissions.reset()


def _due(**overrides):
    overrides.setdefault("scheduled_for", NOW - timedelta(minutes=1))
    return make_message(**overrides)


def _spanish_case(phone):
    customer = make_customer(phone_e164=phone, first_name="Lucía", locale="es_ES", country="ES")
    return make_case(transaction=make_transaction(customer=customer, amount_minor=124900))


def test_sms_and_whatsapp_carry_the_short_link_and_email_the_signed_one(app, channels):
    sms = _due(case=_spanish_case("+34600000001"), channel="sms", template="reminder_short",
               address="+34600000001", locale="es_ES")
    whatsapp = _due(case=_spanish_case("+34600000002"), channel="whatsapp", template="vip_personal",
                    address="+34600000002", locale="es_ES")
    email_case = _spanish_case("+34600000003")
    email = _due(case=email_case, channel="email", template="payment_failed", address=email_case.customer.email,
                 locale="es_ES")
    ids = {"sms": sms.id, "whatsapp": whatsapp.id, "email": email.id}
    cases = {"sms": sms.case_id, "whatsapp": whatsapp.case_id}
    db.session.commit()
    assert dispatch_due(now=NOW)["sent"] == 3
    [text] = [m["body"] for m in channels.twilio.messages.values() if m["_reference"] == f"m{ids['sms']}"]
    merchant = app.config["MERCHANT_NAME"]
    assert text.startswith(f"{merchant}: recordatorio, su pago de 1.249,00 US$ sigue pendiente. Pague en ")
    assert text.endswith("\nBaja: responda STOP") and _issued(SHORT.search(text).group(1), cases["sms"], ids["sms"])
    [wa] = [m for m in channels.whatsapp.messages.values() if m["reference"] == f"m{ids['whatsapp']}"]
    assert wa["text"].startswith(f"Lucía, su pago de 1.249,00\xa0US$ a {merchant} no se ha podido completar")
    assert _issued(SHORT.search(wa["text"]).group(1), cases["whatsapp"], ids["whatsapp"])
    [mail] = channels.smtp.received()
    assert mail["subject"] == f"Su pago de 1.249,00\xa0US$ a {merchant} no se ha completado"
    assert "http://localhost/pay/" in mail["text"] and not SHORT.search(mail["text"])


def _issued(code, case_id, message_id):
    """The code stands for a link of this case, issued for this message (so a payment is attributed to it)."""
    link = db.session.scalar(sa.select(PaymentLink).where(PaymentLink.short_code_hash == token_hash(code)))
    return link is not None and link.case_id == case_id and link.message_id == message_id


def test_a_short_code_is_ten_unbiased_characters_of_the_alphabet(monkeypatch):
    import secrets

    from app.payments import links

    codes = [links.new_short_code() for _ in range(3000)]
    assert all(len(c) == links.SHORT_LENGTH and set(c) <= set(links.SHORT_ALPHABET) for c in codes)
    assert len(set(codes)) == len(codes)
    seen = {ch for c in codes for ch in c}
    assert seen == set(links.SHORT_ALPHABET)  # 30,000 draws reach every one of the 62
    # a byte of 248 or more would make the first 8 characters likelier: it is skipped, not folded in
    reads = iter([bytes([255, 250, 248] * 6 + [0, 1]), bytes(range(62, 82))])
    monkeypatch.setattr(secrets, "token_bytes", lambda n: next(reads))
    assert links.new_short_code() == "01" + "".join(links.SHORT_ALPHABET[b % 62] for b in range(62, 70))
