"""The payment page a customer reaches from a message: /pay/<token>.

GET shows the amount due, what went wrong and the ways to pay that the case's policy offers; POST carries out
one of them through :mod:`app.payments.charges` and redirects (303) to a result page, so a refresh never re-submits.
Card and bank fields are tokenized in the browser by Collect.js (the URL is ``NMI_COLLECT_JS_URL``, the public
key ``NMI_TOKENIZATION_KEY``): this server only ever receives a single-use ``payment_token``.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections import deque
from datetime import date, datetime
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa
from babel import Locale, UnknownLocaleError
from babel.dates import format_date
from flask import Blueprint, Response, current_app, g, redirect, render_template, request, url_for
from flask_babel import force_locale, get_locale, refresh
from flask_babel import gettext as _
from flask_wtf.csrf import CSRFError
from itsdangerous import BadSignature, URLSafeTimedSerializer

from app.messages.merchant import Merchant, merchant_profile
from app.models import RecoveryCase
from app.outbox.states import OutboxState
from app.payments.charges import (
    CaseBusy,
    PaymentError,
    PaymentOptions,
    PayMethod,
    PayOutcome,
    PayRequest,
    RateLimited,
    customer_zone,
    pay_case,
    payment_options,
    payment_outcome,
    plain_reason,
    schedule_payment,
)
from app.payments.links import LinkError, OpenedLink, genuine_payment_link, open_payment_link
from app.payments.money import format_minor
from app.payments.receipts import receipt_reference
from rules.case_states import ACTIVE, CaseState
from rules.declines import DeclineInfo, DeclineKind, DeclineReason

bp = Blueprint("pay", __name__, url_prefix="/pay")
log = logging.getLogger(__name__)

DEFAULT_COLLECT_JS_URL = "https://secure.nmi.com/token/Collect.js"
RESULT_MAX_AGE = 7 * 24 * 3600
#: wrong submissions (unusable links, malformed forms) per client address before it has to wait
MAX_WRONG = 20
WRONG_WINDOW = 600.0


class _Throttle:
    """A sliding window of wrong submissions per client address, in this process.

    Enough to stop someone guessing links or hammering a form from one address; the per-case limit on failed
    payment attempts (``app.payments.charges.failed_attempts_wait``) is kept in the database and holds across hosts.
    """

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _trim(self, key: str, now: float) -> deque[float]:
        hits = self._hits.setdefault(key, deque())
        while hits and hits[0] <= now - self.window:
            hits.popleft()
        return hits

    def blocked(self, key: str) -> float | None:
        now = time.monotonic()
        with self._lock:
            hits = self._trim(key, now)
            if len(hits) >= self.limit:
                return hits[0] + self.window - now
            if not hits:
                self._hits.pop(key, None)
        return None

    def hit(self, key: str) -> None:
        now = time.monotonic()
        with self._lock:
            self._trim(key, now).append(now)
            if len(self._hits) > 50_000:  # a flood of addresses must not grow this without bound
                for stale in [k for k, v in self._hits.items() if not v or v[-1] <= now - self.window]:
                    del self._hits[stale]

    def reset(self) -> None:
        with self._lock:
            self._hits.clear()


wrong_submissions = _Throttle(MAX_WRONG, WRONG_WINDOW)


# -- routes ------------------------------------------------------------------------------------------------------
@bp.before_request
def _fresh_locale() -> None:
    # Until a view knows the customer, the words follow the browser (g can outlive one request, e.g. in tests).
    g.pop("pay_locale", None)
    refresh()


def brand_context() -> dict[str, Any]:
    """What every payment page's layout shows of the merchant (their logo and colour)."""
    return {"pay_brand": _merchant()}


bp.context_processor(brand_context)


@bp.get("/brand.css")
def brand_css():  # type: ignore[no-untyped-def]
    """The merchant's colours for pay.css (a stylesheet of our own: the page's CSP allows no inline style)."""
    brand = _merchant()
    css = (f":root{{--brand:{brand.brand_colour};--on-brand:{brand.text_on_brand};--brand-ink:{brand.brand_ink}}}\n")
    return Response(css, mimetype="text/css", headers={"Cache-Control": "public, max-age=300"})


@bp.get("/<token>")
def page(token: str):  # type: ignore[no-untyped-def]
    limited = _limited()
    if limited is not None:
        return limited
    try:
        opened = open_payment_link(token, current_app.config["SECRET_KEY"])
    except LinkError as exc:
        return _refused(exc)
    return _render_page(token, opened)


@bp.post("/<token>")
def submit(token: str):  # type: ignore[no-untyped-def]
    limited = _limited()
    if limited is not None:
        return limited
    try:
        opened = open_payment_link(token, current_app.config["SECRET_KEY"], track=False)
    except LinkError as exc:
        replay = _replayed_attempt(token, request.form.get("attempt", ""))
        return replay if replay is not None else _refused(exc)
    form = request.form
    choice = form.get("method", "")
    attempt = form.get("attempt", "")
    case_id, link_id, message_id = opened.case.id, opened.link.id, opened.message_id
    try:
        if choice == "later":
            try:
                pay_on = date.fromisoformat(form.get("pay_on", ""))
            except ValueError:
                raise PaymentError("bad_date", "not a date") from None
            outcome = schedule_payment(case_id, pay_on, attempt=attempt, link_id=link_id, message_id=message_id)
        else:
            try:
                method = PayMethod(choice)
            except ValueError:
                raise PaymentError("bad_method", f"unknown method {choice!r}") from None
            outcome = pay_case(PayRequest(
                case_id=case_id, method=method, attempt=attempt, payment_token=form.get("payment_token") or None,
                link_id=link_id, message_id=message_id, ip_address=request.remote_addr,
                card_last4=form.get("card_last4") or None, card_brand=form.get("card_brand") or None))
    except RateLimited as exc:
        minutes = max(1, round(exc.retry_after.total_seconds() / 60))
        return _render_page(token, opened, status=429,
                            error=_wait_error(opened, minutes))
    except CaseBusy:
        return _render_page(token, opened, status=503,
                            error=N_("We are still working on an earlier attempt. Please wait a moment and "
                                     "check again before paying."))
    except PaymentError as exc:
        log.info("payment form refused: %s (%s)", exc.code, exc)
        wrong_submissions.hit(_client_key())
        return _render_page(token, opened, status=400, error=N_(_FORM_ERRORS.get(exc.code, _FORM_ERRORS[""])))
    return redirect(url_for("pay.result", token=token, ref=_result_ref(outcome)), code=303)


@bp.get("/<token>/done/<ref>")
def result(token: str, ref: str):  # type: ignore[no-untyped-def]
    merchant = _merchant().name
    try:
        data = _result_serializer().loads(ref, max_age=RESULT_MAX_AGE)
    except BadSignature:
        wrong_submissions.hit(_client_key())
        return _secured(render_template("pay/invalid.html", merchant=merchant, lang=_lang()), 404)
    from app.extensions import db
    from app.models import OutboxMessage

    outcome: PayOutcome | None
    if "p" in data:
        outcome = payment_outcome(int(data["p"]))
    else:
        row = db.session.get(OutboxMessage, int(data.get("s", 0)))
        case0 = db.session.get(RecoveryCase, row.case_id) if row is not None and row.case_id else None
        outcome = None if row is None or case0 is None else PayOutcome(
            "scheduled" if row.state in _NOT_CHARGED_YET else row.state, case0.id,
            case0.amount_due_minor, case0.currency, scheduled_for=row.scheduled_for, scheduled_id=row.id)
    case = db.session.get(RecoveryCase, outcome.case_id) if outcome is not None else None
    if outcome is None or case is None or case.id != data.get("c"):
        return _secured(render_template("pay/invalid.html", merchant=merchant, lang=_lang()), 404)
    return _secured(render_template("pay/result.html", **_result_context(token, case, outcome)))


#: a scheduled payment's row in these states is still "scheduled" to the customer (the charge has not answered)
_NOT_CHARGED_YET = (OutboxState.SCHEDULED, OutboxState.CLAIMED, OutboxState.SENDING)


@bp.errorhandler(CSRFError)
def csrf_error(exc: CSRFError):  # type: ignore[no-untyped-def]
    wrong_submissions.hit(_client_key())
    token = (request.view_args or {}).get("token")
    if token:
        try:
            opened = open_payment_link(token, current_app.config["SECRET_KEY"], track=False)
        except LinkError as link_exc:
            return _refused(link_exc)
        return _render_page(token, opened, status=400,
                            error=N_("This page was open for a long time, so we could not accept it. "
                                     "Please try again."))
    return _secured(render_template("pay/invalid.html", merchant=_merchant().name, lang=_lang()),
                    400)


# -- rendering ---------------------------------------------------------------------------------------------------
def N_(text: str) -> str:
    """Marks a message for extraction; it is translated where it is shown (``_render_page`` translates errors)."""
    return text


def _wait_error(opened: OpenedLink, minutes: int) -> str:
    _use_customer_locale(opened.case)
    if minutes == 1:
        return _("Too many attempts did not go through. Please wait 1 minute before trying again.")
    return _("Too many attempts did not go through. Please wait %(num)d minutes before trying again.", num=minutes)


def _text_locale(locale: str | None) -> str:
    """The customer's locale if Babel knows it (words fall back to English when it has no translation)."""
    try:
        return str(Locale.parse(locale or "en_US"))
    except (ValueError, TypeError, UnknownLocaleError):
        return "en_US"


def _use_customer_locale(case: RecoveryCase) -> str:
    """Make this request's words follow the case's customer, not the browser (see ``app._select_locale``)."""
    locale = _text_locale(case.customer.locale if case.customer else None)
    if g.get("pay_locale") != locale:
        g.pay_locale = locale
        refresh()
    return locale


def _lang() -> str:
    """The page's ``lang``: the language its words are in (English unless a translation is shipped)."""
    language = get_locale().language if get_locale() is not None else "en"
    return language if language in current_app.config.get("LANGUAGES", ("en",)) else "en"


_FORM_ERRORS = {
    "no_token": N_("Please enter your card or bank details and try again."),
    "bad_attempt": N_("Something went wrong with the form. Please try again."),
    "bad_method": N_("Please choose how you would like to pay."),
    "bad_date": N_("Please pick a date within the range shown."),
    "not_offered": N_("That option is not available for this payment. Please choose another one."),
    "no_vault": N_("We cannot take this payment online. Please contact us."),
    "no_gateway": N_("We cannot take this payment online right now. Please contact us."),
    "": N_("Something went wrong. Please try again."),
}


def _render_page(token: str, opened: OpenedLink, *, status: int = 200, error: str | None = None) -> Response:
    case = opened.case
    options = payment_options(case)
    context = _common(case)
    locale = context["locale"]
    collect_url = current_app.config.get("NMI_COLLECT_JS_URL") or DEFAULT_COLLECT_JS_URL
    tokenization_key = current_app.config.get("NMI_TOKENIZATION_KEY")
    money = lambda minor: format_minor(minor, case.currency, locale)  # noqa: E731
    context.update(
        token=token, options=options, error=error, attempt=secrets.token_urlsafe(18),
        amount=money(options.amount_due_minor), reason=plain_reason(options.decline),
        reason_hint=_hint(options.decline, options), card_label=_card_label(options.card_on_file),
        collect_js_url=collect_url if tokenization_key else None, tokenization_key=tokenization_key,
        partial_now=money(options.partial_minor) if options.partial_minor else None,
        partial_rest=money(options.amount_due_minor - options.partial_minor) if options.partial_minor else None,
        partial_rest_on=_date(options.partial_rest_on, locale),
        pay_later_min=options.today.isoformat(),
        pay_later_max=options.pay_later_until.isoformat() if options.pay_later_until else None,
        pay_later_until=_date(options.pay_later_until, locale),
        scheduled_on=_date(options.scheduled.scheduled_for.astimezone(customer_zone(case.customer, case)).date(),
                           locale) if options.scheduled is not None else None,
        paid_so_far=money(case.recovered_amount_minor) if case.recovered_amount_minor else None,
    )
    if error:
        context["error"] = _(error)
    with force_locale(context["text_locale"]):
        body = render_template("pay/page.html", **context)
    return _secured(body, status, collect_url if tokenization_key else None)


def _result_context(token: str, case: RecoveryCase, outcome: PayOutcome) -> dict[str, Any]:
    context = _common(case)
    locale = context["locale"]
    zone = customer_zone(case.customer, case)
    options = payment_options(case) if case.state in ACTIVE else None
    context.update(
        token=token, outcome=outcome, amount=format_minor(outcome.amount_minor, outcome.currency, locale),
        remaining=format_minor(outcome.remaining_minor, case.currency, locale) if outcome.remaining_minor else None,
        scheduled_on=_date(outcome.scheduled_for.astimezone(zone).date(), locale) if outcome.scheduled_for else None,
        reason=_result_reason(outcome),
        next_steps=_next_steps(outcome.decline, options) if outcome.status in ("declined", "error") else [],
        can_retry=options is not None and outcome.status not in ("approved", "already_paid", "scheduled"),
        email=_masked_email(case.customer.email if case.customer else None),
        paid_with=_card_label(case.customer.card_masked if case.customer else None),
        paid_on=_date(datetime.now(zone).date(), locale),
        reference=receipt_reference(outcome.payment_id) if outcome.payment_id else None,
    )
    return context


def _result_reason(outcome: PayOutcome) -> str | None:
    if outcome.status not in ("declined", "error"):
        return None
    stored_card = outcome.method in (PayMethod.new_card.value, PayMethod.ach.value)
    if outcome.status == "error" and stored_card and outcome.decline is not None \
            and outcome.decline.reason is DeclineReason.gateway_error:
        return _("We could not use those details. Please check them and try again, or choose another way to pay.")
    if outcome.status == "declined" and stored_card:
        return plain_reason(outcome.decline, this_card=True)
    return plain_reason(outcome.decline)


def _common(case: RecoveryCase) -> dict[str, Any]:
    customer = case.customer
    locale = (customer.locale if customer else None) or "en_US"
    tx = case.transaction
    zone = customer_zone(customer, case)
    text_locale = _use_customer_locale(case)
    return {
        "merchant": _merchant().name,
        "support_email": _merchant().support_email,
        "website": _merchant().website_url,
        "locale": locale,
        "text_locale": text_locale,
        "lang": _lang(),  # the words follow the customer's locale where a translation is shipped (en, es)
        "description": tx.order_description,
        "failed_on": _date(tx.failed_at.astimezone(zone).date(), locale),
        "first_name": customer.first_name if customer else None,
    }


def _date(value: date | None, locale: str) -> str | None:
    if value is None:
        return None
    try:
        return format_date(value, format="long", locale=locale)
    except (ValueError, LookupError):
        return format_date(value, format="long", locale="en_US")


def _card_label(masked: str | None) -> str | None:
    if not masked:
        return None
    if masked.startswith("ach"):
        digits = masked[-4:]
        return _("bank account ending %(digits)s", digits=digits) if digits.isdigit() else _("your bank account")
    brand = {"4": "Visa", "5": "Mastercard", "3": "American Express", "6": "Discover"}.get(masked[:1]) or _("card")
    last4 = masked[-4:]
    return _("%(brand)s ending %(last4)s", brand=brand, last4=last4) if last4.isdigit() else \
        _("your %(brand)s", brand=brand)


def _hint(decline: DeclineInfo, options: PaymentOptions) -> str | None:
    if decline.kind is DeclineKind.soft and options.card_on_file_usable:
        if decline.reason is DeclineReason.insufficient_funds:
            return _("If money has arrived since, you can try the same card again now.")
        return _("Trying the same card again often works. You can also use a different card.")
    if options.new_card:
        return _("Please use a different card or another way to pay below.")
    return None


def _next_steps(decline: DeclineInfo | None, options: PaymentOptions | None) -> list[str]:
    if options is None:
        return []
    steps: list[str] = []
    reason = decline.reason if decline else DeclineReason.unknown
    if reason in (DeclineReason.issuer_unavailable, DeclineReason.gateway_error, DeclineReason.rate_limited,
                  DeclineReason.retry_later):
        steps.append(_("Wait a few minutes, then try again."))
    if reason is DeclineReason.insufficient_funds:
        if options.partial_minor:
            steps.append(_("Pay part of the amount now and the rest later."))
        if options.pay_later_until:
            steps.append(_("Choose a date to pay later, when the money is there."))
    if reason in (DeclineReason.do_not_honor, DeclineReason.lost_stolen_fraud, DeclineReason.stop_recurring):
        steps.append(_("Call the number on the back of your card to ask your bank why it was declined."))
    if reason is DeclineReason.invalid_card_data:
        steps.append(_("Check the card number, expiry date and security code, then try again."))
    if options.new_card:
        steps.append(_("Use a different card."))
    if options.ach:
        steps.append(_("Pay from your bank account instead."))
    return steps or [_("Please contact us and we will help you pay.")]


def _masked_email(email: str | None) -> str | None:
    if not email or "@" not in email:
        return None
    name, domain = email.split("@", 1)
    return f"{name[:1]}{'•' * max(1, min(len(name) - 1, 6))}@{domain}"


def _result_serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt="pay-result")


def _result_ref(outcome: PayOutcome) -> str:
    data: dict[str, int] = {"c": outcome.case_id}
    if outcome.payment_id is not None:
        data["p"] = outcome.payment_id
    elif outcome.scheduled_id is not None:
        data["s"] = outcome.scheduled_id
    return str(_result_serializer().dumps(data))


def _replayed_attempt(token: str, attempt: str) -> Any:
    """The same submission again after it paid and closed the link (a double click, a refresh): its result."""
    from app.extensions import db
    from app.models import Payment
    from app.payments.charges import ATTEMPT_KEY, order_id_for

    if not ATTEMPT_KEY.match(attempt or ""):
        return None
    link = genuine_payment_link(token, current_app.config["SECRET_KEY"])
    if link is None:
        return None
    payment = db.session.scalar(sa.select(Payment).where(Payment.order_id == order_id_for(link.case_id, attempt)))
    if payment is None:
        return None
    ref = _result_ref(PayOutcome(payment.state, link.case_id, payment.amount_minor, payment.currency,
                                 payment_id=payment.id))
    return redirect(url_for("pay.result", token=token, ref=ref), code=303)


def _client_key() -> str:
    return request.remote_addr or "unknown"


def _limited() -> Response | None:
    wait = wrong_submissions.blocked(_client_key())
    if wait is None:
        return None
    body = render_template("pay/limited.html", merchant=_merchant().name, lang=_lang(),
                           minutes=max(1, round(wait / 60)))
    response = _secured(body, 429)
    response.headers["Retry-After"] = str(max(1, int(wait)))
    return response


def _refused(exc: LinkError) -> Response:
    # A token we did not issue gets one page whatever the reason: a stranger learns nothing about a case.
    log.info("payment link refused: %s", exc.reason)
    if exc.reason in ("bad signature", "unknown token"):
        wrong_submissions.hit(_client_key())
    if exc.link is not None:
        closed = _closed_link_page(exc.link.case_id)
        if closed is not None:
            return closed
    body = render_template("pay/invalid.html", merchant=_merchant().name, lang=_lang())
    return _secured(body, 404)


def _closed_link_page(case_id: int) -> Response | None:
    """The page for a genuine link that no longer takes payments, in its customer's language: "already paid"
    (with the receipt's reference) when the case was recovered, else "expired". Neither shows the amount or the
    customer's name: the link may have been forwarded."""
    from app.extensions import db

    case = db.session.get(RecoveryCase, case_id)
    if case is None:
        return None
    text_locale = _use_customer_locale(case)
    brand = _merchant()
    context: dict[str, Any] = {"merchant": brand.name, "support_email": brand.support_email,
                               "website": brand.website_url, "lang": _lang()}
    template = "pay/expired.html"
    if case.state == CaseState.RECOVERED:
        template = "pay/paid.html"
        payment = _last_approved_payment(case.id)
        if payment is not None:  # none when it was marked paid elsewhere
            paid_at = (payment.completed_at or payment.created_at).astimezone(customer_zone(case.customer, case))
            context["reference"] = receipt_reference(payment.id)
            context["paid_on"] = _date(paid_at.date(), (case.customer.locale if case.customer else None) or "en_US")
    with force_locale(text_locale):
        body = render_template(template, **context)
    return _secured(body, 404)


def _last_approved_payment(case_id: int) -> Any:
    from app.extensions import db
    from app.models import Payment

    return db.session.scalar(sa.select(Payment).where(Payment.case_id == case_id, Payment.state == "approved")
                             .order_by(Payment.id.desc()).limit(1))


def _merchant() -> Merchant:
    return merchant_profile()


def _secured(body: str, status: int = 200, collect_url: str | None = None) -> Response:
    """No caching, no referrer (the token is in the URL), a tight content security policy."""
    response = Response(body, status=status, mimetype="text/html")
    collect_origin = ""
    if collect_url:
        parts = urlsplit(collect_url)
        collect_origin = f" {parts.scheme}://{parts.netloc}"
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Robots-Tag"] = "noindex"
    logo = _merchant().logo_url
    logo_origin = f" {urlsplit(logo).scheme}://{urlsplit(logo).netloc}" if logo else ""
    response.headers["Content-Security-Policy"] = (
        f"default-src 'self'; script-src 'self'{collect_origin}; connect-src 'self'{collect_origin}; "
        f"frame-src{collect_origin or ' ' + chr(39) + 'none' + chr(39)}; style-src 'self'; "
        f"img-src 'self' data:{logo_origin}; "
        "form-action 'self'; base-uri 'none'; frame-ancestors 'none'; object-src 'none'"
    )
    return response
