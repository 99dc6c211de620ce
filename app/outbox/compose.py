"""Composing: a row, its case and customer, rendered into the message a channel sends."""

from __future__ import annotations

from typing import Any

from flask import current_app

from app.channels.base import Channel, OutboundMessage
from app.extensions import db
from app.messages.merchant import merchant_profile
from app.messages.templates_service import resolve_template, whatsapp_call
from app.messages.templating import MessageTemplate as TemplateSource
from app.messages.templating import TemplateContext, render_with_variables
from app.models import Customer, OutboxMessage, RecoveryCase
from app.outbox.batch import payment_link
from app.outbox.consolidate import MergedCase, with_merged
from app.outbox.senders import reference_for
from app.payments.links import short_url, unsubscribe_token
from app.payments.receipts import is_receipt, receipt_email, receipt_payment_id
from rules.vocabulary import PHONE_CHANNELS

#: template sources read during the current dispatch run (cleared when a run starts: a run sends thousands)
_TEMPLATES: dict[tuple[Any, ...], TemplateSource] = {}


def forget_templates() -> None:
    """A run starts with the templates as they are now (an edit made since the last run applies)."""
    _TEMPLATES.clear()


def _template_source(name: str | None, channel: str, locale: str | None) -> TemplateSource:
    key = (db.engine, name, channel, locale)  # the engine, not its URL rendered as text for every message
    source = _TEMPLATES.get(key)
    if source is None:
        source = _TEMPLATES[key] = _load_template_source(name, channel, locale)
    return source


def _load_template_source(name: str | None, channel: str, locale: str | None) -> TemplateSource:
    return resolve_template(name, channel, locale)  # the merchant's own, else the built-in, in the customer's language


def compose(
    message: OutboxMessage,
    case: RecoveryCase | None,
    customer: Customer | None,
    channel: str,
    merged: list[MergedCase] | None = None,
) -> OutboundMessage:
    if is_receipt(message):
        return _receipt(message)
    config = current_app.config
    base = config["PUBLIC_BASE_URL"].rstrip("/")
    pay_url = base
    transaction: dict[str, Any] = {}
    offers: list[str] = []
    if case is not None:
        token = payment_link(case, config["SECRET_KEY"], message.id)
        pay_url = f"{base}/pay/{token}"
        if channel in PHONE_CHANNELS:
            pay_url = short_url(base, token, config["SECRET_KEY"])  # one SMS segment, not two
        tx = case.transaction
        transaction = {
            "id": tx.gateway_transaction_id,
            "amount_minor": case.amount_due_minor,
            "currency": case.currency,
            "failed_at": tx.failed_at,
            "product_type": tx.product_type,
            "decline_reason": tx.decline_reason,
            "description": tx.order_description,
        }
        offers = list((case.plan or {}).get("offers") or [])
    who = {}
    if customer is not None:
        who = {
            "id": customer.id,
            "first_name": customer.first_name,
            "last_name": customer.last_name,
            "email": customer.email,
            "phone": customer.phone_e164,
            "locale": customer.locale,
            "country": customer.country,
        }
    unsubscribe = f"{base}/t/u/{unsubscribe_token(config['SECRET_KEY'], message.id)}"
    context = TemplateContext(
        customer=who,
        transaction=transaction,
        payment_link=pay_url,
        merchant=merchant_profile().template_fields(),
        offers=offers,
        unsubscribe_link=unsubscribe,
        timezone=customer.timezone if customer else None,
    )
    source = _template_source(message.template, channel, message.locale)
    rendered, variables = render_with_variables(channel, source, context, locale=message.locale)
    text, html = with_merged(rendered.text, rendered.html, merged or [], message.locale)
    reference = reference_for(message.id)
    if channel == Channel.WHATSAPP:
        # the approved body's parameters, from the variables the body was rendered with
        language, params = whatsapp_call(source, context, message.locale, variables=variables)
        return OutboundMessage(
            channel=Channel.WHATSAPP,
            to=message.address or "",
            reference=reference,
            text=rendered.text,
            template_name=message.template or "payment_failed",
            template_language=language,
            template_params=params,
        )
    if channel == Channel.SMS:
        from app.channels.sms import with_reference

        callback = with_reference(f"{base}/hooks/twilio/status", reference)
        return OutboundMessage(
            channel=Channel.SMS,
            to=message.address or "",
            reference=reference,
            text=text or "",
            status_callback=callback,
        )
    return OutboundMessage(
        channel=Channel.EMAIL,
        to=message.address or "",
        reference=reference,
        subject=rendered.subject,
        text=text or "",
        html=html,
        unsubscribe_url=unsubscribe,
    )


def _receipt(message: OutboxMessage) -> OutboundMessage:
    """A payment's receipt: plain text, from the payment as it is now (app.payments.receipts)."""
    payment_id = receipt_payment_id(message)
    if payment_id is None:
        raise LookupError(f"outbox message {message.id} is a receipt without a payment")
    subject, text = receipt_email(payment_id)
    return OutboundMessage(channel=Channel.EMAIL, to=message.address or "", reference=reference_for(message.id),
                           subject=subject, text=text)
