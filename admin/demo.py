"""The demo's control page, like Stripe's test clocks: fail a payment for a chosen or a new customer, move the
business clock forward so the next steps go out, and see what was sent, with links to the sandbox inboxes.

Admin only, and only when the app runs the demo (``DEMO_MODE``): anywhere else every URL here is a 404 and the menu
does not show it. Everything goes through the real path (app.demo.control); every action is audited there.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

import phonenumbers
import sqlalchemy as sa
from babel import Locale
from babel.dates import format_datetime
from flask import abort, current_app, flash, redirect, request, url_for
from flask_admin import BaseView, expose
from flask_babel import get_locale
from flask_babel import gettext as _
from flask_login import current_user

from admin.i18n import _l
from admin.security import RoleGuard, has_role
from app import clock
from app.demo import control as demo_control
from app.extensions import db
from app.models import Customer, RecoveryCase, User
from app.payments.money import format_minor

MAX_AMOUNT = Decimal("1000000")
#: what the page shows for the service's choices (its own texts are the gateway's English)
DECLINE_LABELS = {"202": _l("Insufficient funds"), "201": _l("Do not honor"), "223": _l("Expired card"),
                  "203": _l("Over limit"), "225": _l("Invalid card security code"), "251": _l("Lost card"),
                  "253": _l("Fraudulent card"), "264": _l("Declined, retry in a few days")}
PRODUCT_LABELS = {"subscription": _l("A monthly membership (subscription)"),
                  "digital": _l("An e-book download (digital)"), "physical": _l("A boxed kit (physical)"),
                  "one_time": _l("A workshop ticket (one-time)")}
CARD_OUTCOMES = {"approve": _l("approves"), "201": _l("declines: do not honor (201)"),
                 "202": _l("declines: insufficient funds (202)")}
ROLE_HINTS = {"admin": _l("everything, including this page"), "author": _l("writes policies and submits them"),
              "approver": _l("approves and activates what an author submitted")}
#: the form as it first shows: one click fails a payment for a Spanish customer
FIRST_FORM = {"customer": "new", "name": "Lucía García", "email": "lucia@example.com", "phone": "+34 612 345 678",
              "country": "ES", "amount": "49.00", "product_type": "subscription", "decline_code": "202"}
#: a sample person per country: the form swaps to the country's own when a newcomer changes the country and has
#: not typed a person of their own (a UK customer with a Spanish mobile would be planned in Madrid's time)
SAMPLE_PEOPLE = {
    "ES": ("Lucía García", "lucia@example.com", "+34 612 345 678"),
    "US": ("Jordan Smith", "jordan@example.com", "+1 212 555 0147"),
    "GB": ("Oliver Jones", "oliver@example.com", "+44 7400 123456"),
    "MX": ("Sofía Hernández", "sofia@example.com", "+52 55 1234 5678"),
    "FR": ("Camille Martin", "camille@example.com", "+33 6 12 34 56 78"),
    "DE": ("Lena Müller", "lena@example.com", "+49 1512 3456789"),
    "CA": ("Emma Tremblay", "emma@example.com", "+1 416 555 0199"),
    "AU": ("Jack Wilson", "jack@example.com", "+61 412 345 678"),
    "BR": ("Ana Souza", "ana@example.com", "+55 11 91234 5678"),
}
COMMON_ZONES = ("Europe/Madrid", "America/New_York", "Europe/London", "America/Los_Angeles", "UTC")


def demo_on() -> bool:
    return bool(current_app.config.get("DEMO_MODE"))


def register(admin: Any) -> None:
    """Add the control page to ``admin`` when its app runs the demo, first in the menu after Home. Anywhere else
    its URLs do not exist at all. The demo command calls this again after turning the demo on (the app was built
    before), so it is idempotent."""
    if admin.app is None or not admin.app.config.get("DEMO_MODE"):
        return
    if any(isinstance(view, DemoControlView) for view in admin._views):
        return
    admin.add_view(DemoControlView(name=_l("Demo control"), endpoint="demo", url="/admin/demo"))
    menu = admin._menu  # Flask-Admin appends; a newcomer should find it right after Home
    menu.insert(1, menu.pop())


class FieldErrors(ValueError):
    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


class DemoControlView(RoleGuard, BaseView):
    read_roles = ("admin",)
    write_roles = ("admin",)

    def is_visible(self) -> bool:
        return demo_on() and has_role("admin")

    def _handle_view(self, name: str, /, **kwargs: Any) -> Any:
        if not demo_on():  # not even a sign-in page: outside the demo this page does not exist
            abort(404)
        return super()._handle_view(name, **kwargs)

    @expose("/")
    def index(self) -> Any:
        return self._page()

    @expose("/fail", methods=["POST"])
    def fail(self) -> Any:
        try:
            wanted = parse_failure(request.form)
        except FieldErrors as exc:
            return self._page(form=request.form, errors=exc.errors), 400
        try:
            result = demo_control.fail_payment(wanted, actor=current_user.email)
        except demo_control.DemoError as exc:
            db.session.rollback()
            _stay_signed_in()
            flash(_("The payment was not failed: %(why)s", why=str(exc)), "error")
            return self._page(form=request.form), 502
        _stay_signed_in()
        flash(_("The NMI simulator declined the payment and Recoup fetched it: case #%(case)s is open. "
                "Move the clock to send its next step.", case=result.case_id), "success")
        return redirect(url_for(".index", _anchor=f"case-{result.case_id}"))

    @expose("/clock", methods=["POST"])
    def move_clock(self) -> Any:
        step = request.form.get("step", "")
        if step == "next" and demo_control.next_scheduled() is None:
            flash(_("Nothing is scheduled yet: fail a payment first."), "error")
            return redirect(url_for(".index"))
        try:
            result = demo_control.advance_clock(step, actor=current_user.email, zone=request.form.get("zone"))
        except clock.ClockError as exc:
            db.session.rollback()
            _stay_signed_in()
            flash(_("The clock was not moved: %(why)s", why=str(exc)), "error")
            return redirect(url_for(".index"))
        _stay_signed_in()
        flash(_("Business time is now %(when)s. Dispatch sent %(sent)d message(s).",
                when=at(result.business_now, "UTC"), sent=int(result.dispatched.get("sent", 0))), "success")
        return redirect(url_for(".index", _anchor="demo-sent"))

    def _page(self, form: Any = None, errors: dict[str, str] | None = None) -> Any:
        cases = demo_control.demo_cases()
        zone = _latest_zone(cases)
        inboxes = dict(current_app.config.get("DEMO_INBOXES") or {})
        from app.demo.run import DEMO_ACCOUNTS, TEST_CARDS

        return self.render(
            "admin/demo/index.html", form=form or FIRST_FORM, errors=errors or {}, now=clock.business_now(),
            offset=clock.offset(), zone=zone, zones=_zones(zone), next_due=demo_control.next_scheduled(),
            customers=_customers(), cases=[(c, demo_control.case_messages(c.id)) for c in cases],
            inboxes=inboxes, inbox_url=lambda channel, address: demo_control.inbox_url(inboxes, channel, address),
            declines=[(code, DECLINE_LABELS.get(code, text)) for code, text in demo_control.DECLINES],
            products=[(key, PRODUCT_LABELS.get(key, key)) for key in demo_control.PRODUCTS],
            currencies=demo_control.CURRENCIES, at=at, format_minor=format_minor, ahead=ahead,
            accounts=[(email, password, ROLE_HINTS[role]) for email, password, role in DEMO_ACCOUNTS],
            test_cards=[(number, CARD_OUTCOMES[outcome]) for number, outcome in TEST_CARDS],
            sample_people={country: dict(zip(("name", "email", "phone"), person, strict=True))
                           for country, person in SAMPLE_PEOPLE.items()},
        )


def _stay_signed_in() -> None:
    """A dispatch ends the request's database session (it works in short sessions of its own): the signed-in
    user, loaded in it, joins the next one so the rest of the request can still read them."""
    user = current_user._get_current_object()  # type: ignore[attr-defined]
    if isinstance(user, User) and user not in db.session:
        db.session.add(user)


# -- reading the form ----------------------------------------------------------------------------------------------
def parse_failure(form: Any) -> demo_control.FailureRequest:
    """The form (strings) as a request for the service, or FieldErrors saying what is wrong with each field."""
    errors: dict[str, str] = {}

    def get(name: str) -> str:
        return str(form.get(name) or "").strip()

    existing = _existing_customer(get("customer"), errors)
    country = (existing.country if existing else get("country").upper()) or ""
    if existing is None:
        if not get("name"):
            errors["name"] = _("Give the customer's name.")
        if not _looks_like_email(get("email")):
            errors["email"] = _("Give an email address like ana@example.com.")
        if country not in _countries():
            errors["country"] = _("“%(value)s” is not a country: use its two-letter code, like ES or US.",
                                  value=get("country"))
    phone = _phone(get("phone"), country, errors) if existing is None else existing.phone_e164
    amount = _amount(get("amount"), errors)
    currency = get("currency").upper() or demo_control.currency_for(country)
    if currency not in demo_control.CURRENCIES:
        errors["currency"] = _("Pick one of %(list)s.", list=", ".join(demo_control.CURRENCIES))
    if get("product_type") not in demo_control.PRODUCTS:
        errors["product_type"] = _("Pick what was sold.")
    if get("decline_code") not in dict(demo_control.DECLINES):
        errors["decline_code"] = _("Pick why the bank declined the card.")
    if errors:
        raise FieldErrors(errors)
    return demo_control.FailureRequest(
        customer_id=existing.id if existing else None, name=get("name"), email=get("email").lower(), phone=phone,
        country=country, amount=amount, currency=currency, product_type=get("product_type"),
        decline_code=get("decline_code"))


def _existing_customer(raw: str, errors: dict[str, str]) -> Customer | None:
    if raw in ("", "new"):
        return None
    customer = db.session.get(Customer, int(raw)) if raw.isdigit() else None
    if customer is None:
        errors["customer"] = _("There is no such customer: pick one from the list, or a new customer.")
    return customer


def _looks_like_email(text: str) -> bool:
    local, _at, domain = text.partition("@")
    return bool(local) and "." in domain.strip(".") and " " not in text and len(text) <= 254


def _countries() -> set[str]:
    return {code for code in Locale("en").territories if len(code) == 2 and code.isalpha()}


def _phone(raw: str, country: str, errors: dict[str, str]) -> str | None:
    if not raw:
        return None
    try:
        number = phonenumbers.parse(raw, country if len(country) == 2 else None)
    except phonenumbers.NumberParseException:
        number = None
    if number is None or not phonenumbers.is_valid_number(number):
        errors["phone"] = _("Give a valid mobile number with its country code, like +34 612 345 678, "
                            "or leave it empty.")
        return None
    return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))


def _amount(raw: str, errors: dict[str, str]) -> Decimal:
    try:
        amount = Decimal(raw.replace(",", "."))
    except InvalidOperation:
        amount = Decimal(-1)
    exponent = amount.as_tuple().exponent
    if not amount.is_finite() or amount <= 0 or amount > MAX_AMOUNT or not isinstance(exponent, int) or exponent < -2:
        errors["amount"] = _("Give an amount above zero with at most two decimals, like 49.00.")
        return Decimal(0)
    return amount.quantize(Decimal("0.01"))


# -- what the page shows -------------------------------------------------------------------------------------------
def at(moment: datetime | None, zone: str | None) -> str:
    """A moment in a zone, with the zone's label: "Mon 30 Nov, 09:00 CET"."""
    if moment is None:
        return "—"
    tz = ZoneInfo(zone or "UTC")
    local = moment.astimezone(tz)
    return f"{format_datetime(local, 'EEE d MMM yyyy, HH:mm', locale=str(get_locale() or 'en'))} {local.tzname()}"


def ahead(offset: timedelta) -> str:
    """How far the business clock runs ahead of real time, in days and hours."""
    hours = int(offset.total_seconds() // 3600)
    days, hours = divmod(hours, 24)
    minutes = int(offset.total_seconds() // 60) % 60
    return _("%(days)d d %(hours)d h %(minutes)d min", days=days, hours=hours, minutes=minutes)


def _latest_zone(cases: list[RecoveryCase]) -> str:
    for case in cases:
        if case.customer is not None and case.customer.timezone:
            return case.customer.timezone
    return "Europe/Madrid"


def _zones(first: str) -> list[str]:
    return list(dict.fromkeys((first, *COMMON_ZONES)))


def _customers(limit: int = 100) -> list[tuple[int, str]]:
    rows = db.session.scalars(sa.select(Customer).order_by(Customer.id.desc()).limit(limit))
    return [(c.id, " · ".join(p for p in (c.name, c.email or c.phone_e164 or "", c.country or "") if p))
            for c in rows]
