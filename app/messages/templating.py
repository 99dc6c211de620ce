"""Message templates: Jinja2 in a sandbox, an explicit set of variables, and every problem found at save time.

A template sees only these names (see :data:`VARIABLES`): ``customer``, ``transaction``, ``amount`` (the
amount formatted with Babel in the customer's locale), ``payment_link``, ``merchant`` (and ``brand``, its
name), ``offers``, ``product_type``, ``decline_reason`` and ``unsubscribe_link``. :func:`validate_template`
finds syntax errors, unknown variables and attributes, and unsafe access (``__class__`` and friends)
statically, then renders the template against complete sample contexts (each product type, with and without
offers) so that a template that would fail for a customer is refused when it is saved. No Flask, no database.
"""

from __future__ import annotations

import functools
import html as html_lib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel import Locale, UnknownLocaleError
from babel.dates import format_date
from babel.numbers import format_currency, get_currency_precision
from jinja2 import StrictUndefined, Template, TemplateError, TemplateSyntaxError, UndefinedError, meta, nodes
from jinja2.exceptions import SecurityError

from app.channels.base import Channel
from app.messages.template_budget import (
    RENDER_SECONDS,
    VALIDATION_SECONDS,
    BoundedSandbox,
    TemplateTooCostly,
    bounded,
)
from rules.sms_length import SmsLength, non_gsm7_characters, sms_segments

DEFAULT_LOCALE = "en_US"
STOP_NOTICE = "Reply STOP to opt out."
#: the opt-out line added to an SMS that has none, in the language the SMS is written in (GSM-7 only)
STOP_NOTICES = {"en": STOP_NOTICE, "es": "Baja: responda STOP"}
_STOP_SAID = re.compile(r"\b(reply|responda|responde|env[ií]e|env[ií]a|text|send)\s+stop\b", re.I)
SMS_SEGMENT_WARNING = 3  # more segments than this costs real money per message and reads badly

CUSTOMER_FIELDS = frozenset({"id", "first_name", "last_name", "name", "email", "phone", "locale", "country"})
TRANSACTION_FIELDS = frozenset(
    {
        "id",
        "amount",  # formatted, e.g. "$249.00"
        "amount_value",  # the Decimal
        "currency",
        "failed_at",  # a datetime in the customer's time zone
        "failed_on",  # formatted date, e.g. "March 14, 2025"
        "product_type",
        "product_name",
        "decline_reason",
        "description",
    }
)
MERCHANT_FIELDS = frozenset({"name", "support_email", "support_phone", "website", "logo_url", "brand_colour"})
OFFER_FIELDS = frozenset({"code", "title", "url"})

#: the names a template may use; a set of fields for objects, ``None`` for plain values
VARIABLES: dict[str, frozenset[str] | None] = {
    "customer": CUSTOMER_FIELDS,
    "transaction": TRANSACTION_FIELDS,
    "merchant": MERCHANT_FIELDS,
    "amount": None,
    "payment_link": None,
    "brand": None,
    "offers": None,  # a list of objects with OFFER_FIELDS
    "product_type": None,
    "decline_reason": None,
    "unsubscribe_link": None,
}

OFFER_TITLES = {
    "retry_later": "Retry the payment later",
    "partial_payment": "Pay part now",
    "payment_plan": "Split it into instalments",
    "alternative_method": "Pay another way",
    "update_card": "Update your card",
}

PRODUCT_TYPES = ("subscription", "one_time", "digital", "physical", "service")


# -- values --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MessageTemplate:
    """The source of one template: ``subject`` (email), ``body`` (the text; SMS and WhatsApp free text) and,
    for email, an optional ``html`` body (else the branded layout is made from the text). ``locale``: the language
    it is written in, when known (the opt-out line and the layout's words follow it)."""

    body: str
    subject: str | None = None
    html: str | None = None
    locale: str | None = None


@dataclass(frozen=True)
class TemplateProblem:
    """One thing wrong with a template. ``field`` is subject / body / html; ``kind`` is syntax, undefined,
    unsafe, render, length or missing; ``severity`` is error (refuse to save) or warning (show)."""

    field: str
    message: str
    line: int | None = None
    kind: str = "render"
    severity: str = "error"

    def __str__(self) -> str:
        where = f"{self.field}:{self.line}" if self.line else self.field
        return f"{where}: {self.message}"


@dataclass(frozen=True)
class RenderedMessage:
    channel: Channel
    text: str
    subject: str | None = None
    html: str | None = None
    locale: str = DEFAULT_LOCALE
    sms: SmsLength | None = None  # encoding, segments and length of an SMS body

    @property
    def segments(self) -> int | None:
        return self.sms.segments if self.sms else None


@dataclass(frozen=True)
class TemplateContext:
    """The raw facts a message is rendered from (plain mappings, as the services have them).

    ``transaction`` holds ``amount`` (a Decimal or decimal string) or ``amount_minor`` (int), with
    ``currency``; ``failed_at`` may be a datetime or an ISO 8601 string. ``offers`` are offer codes or
    mappings with ``code``, ``title`` and ``url``. ``timezone`` is the customer's IANA zone for dates."""

    customer: Mapping[str, Any]
    transaction: Mapping[str, Any]
    payment_link: str
    merchant: Mapping[str, Any]
    offers: Sequence[str | Mapping[str, Any]] = ()
    unsubscribe_link: str | None = None
    timezone: str | None = None


# -- formatting ----------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=256)
def normalise_locale(locale: str | None) -> str:
    """A locale Babel knows (``pt-BR`` -> ``pt_BR``), or the default."""
    if not locale:
        return DEFAULT_LOCALE
    try:
        return str(Locale.parse(locale.replace("-", "_")))
    except (UnknownLocaleError, ValueError, TypeError):
        return DEFAULT_LOCALE


@functools.lru_cache(maxsize=256)
def babel_locale(locale: str | None) -> Locale:
    """The parsed Babel locale for ``locale`` (normalised), kept: parsing one costs more than formatting with it."""
    return Locale.parse(normalise_locale(locale))


def format_money(amount: Decimal | int | str, currency: str, locale: str | None) -> str:
    """``format_money(Decimal("1234.5"), "EUR", "de_DE")`` -> ``"1.234,50\xa0€"`` (Babel; may hold NBSPs)."""
    return format_currency(Decimal(str(amount)), currency, locale=babel_locale(locale))


def amount_of(transaction: Mapping[str, Any]) -> Decimal:
    """The transaction amount as a Decimal, from ``amount`` or from integer ``amount_minor``."""
    if transaction.get("amount") is not None:
        value = transaction["amount"]
        if isinstance(value, float):
            raise TypeError("amounts are Decimals, decimal strings or minor units, never floats")
        return Decimal(str(value))
    minor = transaction.get("amount_minor")
    if minor is None:
        raise KeyError("the transaction has no amount")
    return Decimal(int(minor)).scaleb(-get_currency_precision(str(transaction["currency"])))


def _when(value: Any, zone: str | None) -> datetime | None:
    if value is None or value == "":
        return None
    when = value if isinstance(value, datetime) else datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    if zone:
        try:
            when = when.astimezone(ZoneInfo(zone))
        except (ZoneInfoNotFoundError, ValueError):
            pass
    return when


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def build_context(context: TemplateContext | Mapping[str, Any], locale: str | None = None) -> dict[str, Any]:
    """The variables a template sees, with money and dates formatted for ``locale`` (default: the
    customer's)."""
    if not isinstance(context, TemplateContext):
        context = TemplateContext(**context)
    customer, transaction, merchant = context.customer, context.transaction, context.merchant
    locale = normalise_locale(locale or customer.get("locale"))
    currency = str(transaction.get("currency") or "USD").upper()
    value = amount_of(transaction)
    amount = format_money(value, currency, locale)
    failed_at = _when(transaction.get("failed_at"), context.timezone or customer.get("timezone"))
    first, last = _text(customer.get("first_name")), _text(customer.get("last_name"))
    name = _text(customer.get("name")) or " ".join(p for p in (first, last) if p)
    product_type = _text(transaction.get("product_type"))
    decline_reason = _text(transaction.get("decline_reason"))
    merchant_vars = {k: _text(merchant.get(k)) for k in MERCHANT_FIELDS}
    offers = []
    for offer in context.offers:
        item = {"code": offer} if isinstance(offer, str) else dict(offer)
        code = _text(item.get("code"))
        title = _text(item.get("title")) or OFFER_TITLES.get(code) or code.replace("_", " ").capitalize()
        offers.append({"code": code, "title": title, "url": _text(item.get("url")) or context.payment_link})
    return {
        "customer": {
            "id": _text(customer.get("id")),
            "first_name": first,
            "last_name": last,
            "name": name,
            "email": _text(customer.get("email")),
            "phone": _text(customer.get("phone")),
            "locale": locale,
            "country": _text(customer.get("country")),
        },
        "transaction": {
            "id": _text(transaction.get("id")),
            "amount": amount,
            "amount_value": value,
            "currency": currency,
            "failed_at": failed_at,
            "failed_on": format_date(failed_at, "long", locale=babel_locale(locale)) if failed_at else "",
            "product_type": product_type,
            "product_name": _text(transaction.get("product_name")),
            "decline_reason": decline_reason,
            "description": _text(transaction.get("description")),
        },
        "merchant": merchant_vars,
        "brand": merchant_vars["name"],
        "amount": amount,
        "payment_link": context.payment_link,
        "offers": offers,
        "product_type": product_type,
        "decline_reason": decline_reason,
        "unsubscribe_link": context.unsubscribe_link or "",
    }


def sample_context(product_type: str = "subscription", *, with_offers: bool = True) -> TemplateContext:
    """A complete context with every variable filled in (what templates are checked against)."""
    return TemplateContext(
        customer={
            "id": "c-1",
            "first_name": "Ana",
            "last_name": "Silva",
            "email": "ana@example.com",
            "phone": "+13055550142",
            "locale": "en_US",
            "country": "US",
        },
        transaction={
            "id": "t-9",
            "amount": "249.00",
            "currency": "USD",
            "failed_at": "2026-11-27T01:25:00+00:00",
            "product_type": product_type,
            "product_name": "Pro plan",
            "decline_reason": "insufficient_funds",
            "description": "Pro plan, monthly",
        },
        payment_link="https://pay.example.com/pay/tok_sample",
        merchant={
            "name": "Acme",
            "support_email": "help@acme.example",
            "support_phone": "+18005550100",
            "website": "https://acme.example",
            "logo_url": "https://acme.example/logo.png",
            "brand_colour": "#1d4ed8",
        },
        offers=("retry_later", "partial_payment") if with_offers else (),
        unsubscribe_link="https://pay.example.com/u/tok_sample",
        timezone="America/New_York",
    )


# -- environments --------------------------------------------------------------------------------------------
def _environment(autoescape: bool) -> BoundedSandbox:
    env = BoundedSandbox(
        undefined=StrictUndefined, autoescape=autoescape, keep_trailing_newline=False, trim_blocks=True
    )
    env.globals.clear()  # no range(), lipsum(), dict(), cycler() ...: only the documented variables
    return env


_TEXT_ENV = _environment(autoescape=False)
_HTML_ENV = _environment(autoescape=True)


@functools.lru_cache(maxsize=512)
def _compiled(source: str, autoescape: bool) -> Template:
    """A template compiled once per process and source text (compiling costs far more than rendering; the
    dispatcher renders the same few sources thousands of times). Keyed by the text, so an edit is a new entry."""
    return (_HTML_ENV if autoescape else _TEXT_ENV).from_string(source)


# -- rendering -----------------------------------------------------------------------------------------------
def ensure_sms_compliance(text: str, brand: str, language: str = "en") -> str:
    """Every SMS names the brand and ends with the opt-out notice; add what the template left out (the notice in
    the SMS's ``language``)."""
    text = text.strip()
    if brand and brand.lower() not in text.lower():
        text = f"{brand}: {text}"
    if not _STOP_SAID.search(text):
        text = f"{text}\n{STOP_NOTICES.get(language, STOP_NOTICE)}"
    return text


def _language(template: MessageTemplate, locale: str) -> str:
    return (template.locale or locale).replace("-", "_").split("_")[0].lower()


_URL = re.compile(r"https?://[^\s<>\"']+[^\s<>\"'.,;:!?)]")


def text_to_html(text: str) -> str:
    """A plain HTML body from a text body: escaped, links made clickable, blank lines as paragraphs."""
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", text.strip()) if p.strip()]
    out = []
    for paragraph in paragraphs:
        escaped = html_lib.escape(paragraph)
        linked = _URL.sub(lambda m: f'<a href="{m.group(0)}">{m.group(0)}</a>', escaped)
        out.append("<p>" + linked.replace("\n", "<br>\n") + "</p>")
    return (
        '<!DOCTYPE html><html><head><meta charset="utf-8"><style>'
        "body{font-family:Arial,Helvetica,sans-serif;font-size:16px;line-height:1.5;color:#222}"
        "p{margin:0 0 16px}a{color:#1a56db}"
        "</style></head><body>" + "\n".join(out) + "</body></html>"
    )


def render(
    channel: Channel | str,
    template: MessageTemplate,
    context: TemplateContext | Mapping[str, Any],
    locale: str | None = None,
) -> RenderedMessage:
    """Render ``template`` for one customer. Raises Jinja's errors (UndefinedError, SecurityError) when a
    template that skipped :func:`validate_template` is broken, and :class:`TemplateTooCostly` when it asks for more
    time or memory than its budget (every render is bounded, see :mod:`app.messages.template_budget`)."""
    return render_with_variables(channel, template, context, locale)[0]


def render_with_variables(
    channel: Channel | str,
    template: MessageTemplate,
    context: TemplateContext | Mapping[str, Any],
    locale: str | None = None,
) -> tuple[RenderedMessage, dict[str, Any]]:
    """:func:`render`, and the variables it rendered with (:func:`build_context`), for what else is rendered for the
    same message (a WhatsApp template's parameters: :func:`render_expressions`) without building them again. The
    sandbox is immutable: no template changes them."""
    with bounded(RENDER_SECONDS):
        variables = build_context(context, locale)
        return _render(Channel(channel), template, variables), variables


def _render(channel: Channel, template: MessageTemplate, variables: dict[str, Any]) -> RenderedMessage:
    text = _compiled(template.body, False).render(variables).strip()
    subject = None
    if template.subject is not None:
        subject = re.sub(
            r"[ \t\r\n]+", " ", _compiled(template.subject, False).render(variables)
        ).strip()
    html = None
    sms = None
    language = _language(template, variables["customer"]["locale"])
    if channel is Channel.SMS:
        # Babel separates amounts with (narrow) no-break spaces, which are not GSM-7 and would double the cost
        text = text.replace("\u00a0", " ").replace("\u202f", " ")
        text = ensure_sms_compliance(text, variables["brand"], language)
        sms = sms_segments(text)
    elif channel is Channel.EMAIL:
        if template.html:
            html = _compiled(template.html, True).render(variables)
        else:
            from app.messages.email_layout import branded_html

            html = branded_html(text, variables, language)
    return RenderedMessage(
        channel=channel,
        text=text,
        subject=subject,
        html=html,
        locale=variables["customer"]["locale"],
        sms=sms,
    )


def render_expressions(expressions: Sequence[str], context: TemplateContext | Mapping[str, Any],
                       locale: str | None = None, *, variables: dict[str, Any] | None = None) -> list[str]:
    """Each Jinja expression (``"customer.first_name or 'there'"``) rendered for one customer, as text.
    ``variables``: ``build_context(context, locale)`` when the caller has it already."""
    if variables is None:
        variables = build_context(context, locale)
    with bounded(RENDER_SECONDS):
        return [_compiled("{{ " + expression + " }}", False).render(variables) for expression in expressions]


# -- validation ----------------------------------------------------------------------------------------------
def _static_problems(field_name: str, ast: nodes.Template) -> list[TemplateProblem]:
    problems: list[TemplateProblem] = []

    def add(node: nodes.Node, message: str, kind: str) -> None:
        problems.append(TemplateProblem(field_name, message, getattr(node, "lineno", None), kind))

    for node in ast.find_all((nodes.Extends, nodes.Include, nodes.Import, nodes.FromImport)):
        add(node, "templates cannot include, import or extend other templates", "unsafe")

    loop_items: set[str] = set()
    for loop in ast.find_all(nodes.For):
        if (
            isinstance(loop.iter, nodes.Name)
            and loop.iter.name == "offers"
            and isinstance(loop.target, nodes.Name)
        ):
            loop_items.add(loop.target.name)

    for name in sorted(meta.find_undeclared_variables(ast) - set(VARIABLES)):
        where = next((n for n in ast.find_all(nodes.Name) if n.name == name), ast)
        known = ", ".join(sorted(VARIABLES))
        add(where, f"unknown variable '{name}' (a template can use: {known})", "undefined")

    for node in ast.find_all((nodes.Getattr, nodes.Getitem)):
        if isinstance(node, nodes.Getattr):
            attr: object = node.attr
        elif isinstance(node.arg, nodes.Const):
            attr = node.arg.value
        else:
            continue
        if not isinstance(attr, str):
            continue
        if attr.startswith("_"):
            add(node, f"access to '{attr}' is not allowed", "unsafe")
            continue
        base = node.node
        if not isinstance(base, nodes.Name):
            continue
        fields = OFFER_FIELDS if base.name in loop_items else VARIABLES.get(base.name)
        if fields is not None and attr not in fields:
            add(node, f"'{base.name}' has no '{attr}' (it has: {', '.join(sorted(fields))})", "undefined")
    return problems


def _check_source(
    field_name: str, source: str, env: BoundedSandbox
) -> tuple[list[TemplateProblem], Template | None]:
    """Problems found without rendering, and the compiled template (None if the source did not compile)."""
    try:
        compiled = env.from_string(source)  # compiling also catches unknown filters and tests (and a huge source)
        return _static_problems(field_name, env.parse(source)), compiled
    except TemplateSyntaxError as exc:
        return [TemplateProblem(field_name, exc.message or str(exc), exc.lineno, "syntax")], None
    except TemplateTooCostly as exc:
        return [TemplateProblem(field_name, str(exc), None, "cost")], None
    except TemplateError as exc:
        # Jinja folds constant expressions while it compiles or looks for variables: ('a' ~ (7|attr('x'))) fails there
        return [_render_problem(field_name, exc)], None


def _render_problem(field_name: str, exc: Exception) -> TemplateProblem:
    line = None
    tb = exc.__traceback__
    while tb is not None:  # the template's own line, from the frame Jinja compiled for it
        if tb.tb_frame.f_code.co_filename == "<template>":
            line = tb.tb_lineno
        tb = tb.tb_next
    if isinstance(exc, TemplateTooCostly):
        return TemplateProblem(field_name, f"too costly to render: {exc}", line, "cost")
    if isinstance(exc, SecurityError):
        return TemplateProblem(field_name, f"unsafe access: {exc}", line, "unsafe")
    if isinstance(exc, UndefinedError):
        return TemplateProblem(field_name, f"undefined: {exc}", line, "undefined")
    return TemplateProblem(field_name, f"{type(exc).__name__}: {exc}", line, "render")


def validate_template(
    channel: Channel | str,
    source_subject: str | None,
    source_body: str,
    *,
    source_html: str | None = None,
) -> list[TemplateProblem]:
    """Everything wrong with a template, found when it is saved. An empty list (or only warnings) means save.

    Checks: syntax (and unknown filters), unknown variables and fields, unsafe access, includes; then renders
    against complete sample contexts for every product type, with and without offers; for SMS, reports the
    segment count and the characters that force UCS-2; for email, requires a subject."""
    channel = Channel(channel)
    problems: list[TemplateProblem] = []
    sources = [("subject", source_subject, _TEXT_ENV), ("body", source_body, _TEXT_ENV)]
    if source_html:
        sources.append(("html", source_html, _HTML_ENV))
    compiled: dict[str, Template] = {}
    failed = False
    for field_name, source, env in sources:
        if source is None:
            continue
        found, template = _check_source(field_name, source, env)
        problems.extend(found)
        if template is None:
            failed = True
        elif source:
            compiled[field_name] = template
    if not source_body.strip():
        problems.append(TemplateProblem("body", "the body is empty", None, "missing"))
    if channel is Channel.EMAIL and not (source_subject or "").strip():
        problems.append(TemplateProblem("subject", "an email needs a subject", None, "missing"))
    if channel is not Channel.EMAIL and (source_subject or "").strip():
        problems.append(
            TemplateProblem(
                "subject", f"a {channel} message has no subject; it is ignored", None, "missing", "warning"
            )
        )
    if failed or any(p.severity == "error" for p in problems):
        return _dedupe(problems)

    template = MessageTemplate(body=source_body, subject=source_subject, html=source_html)
    with bounded(VALIDATION_SECONDS):  # every sample render together, however many there are
        longest = _render_samples(channel, template, compiled, problems)
    if longest is not None and longest.sms is not None:
        problems.extend(_sms_length_notes(longest.text, longest.sms))
    return _dedupe(problems)


def _render_samples(channel: Channel, template: MessageTemplate, compiled: dict[str, Template],
                    problems: list[TemplateProblem]) -> RenderedMessage | None:
    """Render each compiled field against every sample context, adding what fails to ``problems``; the longest SMS.
    A template found too costly is not rendered again (its next render would cost as much)."""
    longest: RenderedMessage | None = None
    for product_type in PRODUCT_TYPES:
        for with_offers in (True, False):
            context = sample_context(product_type, with_offers=with_offers)
            for field_name, field_template in compiled.items():
                try:
                    with bounded(RENDER_SECONDS):
                        field_template.render(build_context(context))
                except Exception as exc:  # any failure here would have failed for a customer
                    problems.append(_render_problem(field_name, exc))
                    if isinstance(exc, TemplateTooCostly):
                        return None
            if channel is Channel.SMS and not any(p.severity == "error" for p in problems):
                try:
                    rendered = render(channel, template, context)
                except TemplateTooCostly as exc:
                    problems.append(_render_problem("body", exc))
                    return None
                if longest is None or (
                    rendered.sms and longest.sms and rendered.sms.length > longest.sms.length
                ):
                    longest = rendered
    return longest


def _sms_length_notes(text: str, length: SmsLength) -> list[TemplateProblem]:
    notes = [
        TemplateProblem(
            "body",
            f"{length.segments} segment(s), {length.length} {length.encoding} units with the sample data",
            None,
            "length",
            "warning" if length.segments > SMS_SEGMENT_WARNING else "info",
        )
    ]
    forcing = non_gsm7_characters(text)
    if forcing:
        shown = " ".join(repr(ch) for ch in forcing[:10])
        notes.append(
            TemplateProblem(
                "body", f"these characters force UCS-2 (70 per segment): {shown}", None, "length", "info"
            )
        )
    return notes


def _dedupe(problems: Iterable[TemplateProblem]) -> list[TemplateProblem]:
    seen: set[tuple[str, str, int | None]] = set()
    out = []
    for problem in problems:
        key = (problem.field, problem.message, problem.line)
        if key not in seen:
            seen.add(key)
            out.append(problem)
    return out


def template_errors(problems: Iterable[TemplateProblem]) -> list[TemplateProblem]:
    """Only the problems that should stop a save."""
    return [p for p in problems if p.severity == "error"]
