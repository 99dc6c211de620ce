"""Built-in message templates, used when the merchant has not written their own in the admin.

Each is a Jinja2 template for the sandboxed environment in app.templating. WhatsApp business-initiated
messages must be pre-approved templates at Meta: for WhatsApp these bodies are what the approved template says,
and the message is sent as that template with three parameters (name, amount, link).
"""

from __future__ import annotations

from app.templating import MessageTemplate

_EMAIL_FOOTER = "\n\nIf you have already paid, please ignore this message.\n{{ merchant.name }}"

DEFAULTS: dict[tuple[str, str], MessageTemplate] = {
    ("payment_failed", "email"): MessageTemplate(
        subject="Your payment of {{ amount }} didn't go through",
        body="Hi {{ customer.first_name or 'there' }},\n\nWe tried to charge {{ amount }} for "
        "{{ transaction.description or 'your order' }}, but the payment didn't go through. "
        "It only takes a minute to fix:\n\n{{ payment_link }}" + _EMAIL_FOOTER,
    ),
    ("vip_personal", "email"): MessageTemplate(
        subject="{{ customer.first_name or 'Hello' }}, a quick note about your payment",
        body="Hi {{ customer.first_name or 'there' }},\n\nYour recent payment of {{ amount }} didn't go through. "
        "As one of our valued customers, we've kept everything in place for you. You can complete it "
        "here:\n\n{{ payment_link }}\n\nReply to this email if we can help." + _EMAIL_FOOTER,
    ),
    ("vip_followup", "email"): MessageTemplate(
        subject="Still here to help with your {{ amount }} payment",
        body="Hi {{ customer.first_name or 'there' }},\n\nJust following up: your payment of {{ amount }} is "
        "still open. Complete it here whenever suits you:\n\n{{ payment_link }}" + _EMAIL_FOOTER,
    ),
    ("reminder_short", "email"): MessageTemplate(
        subject="Reminder: {{ amount }} payment pending",
        body="Hi {{ customer.first_name or 'there' }}, your payment of {{ amount }} is still pending. "
        "Pay here: {{ payment_link }}" + _EMAIL_FOOTER,
    ),
    ("final_notice", "email"): MessageTemplate(
        subject="Last reminder about your {{ amount }} payment",
        body="Hi {{ customer.first_name or 'there' }},\n\nThis is our last reminder about your payment of "
        "{{ amount }}. If you'd like to keep your order, please complete it here:\n\n{{ payment_link }}"
        + _EMAIL_FOOTER,
    ),
}

_SMS = "{{ brand }}: your payment of {{ amount }} didn't go through. Pay securely: {{ payment_link }}"
_SMS_REMINDER = "{{ brand }}: reminder, {{ amount }} is still due. Pay here: {{ payment_link }}"
for _name in ("payment_failed", "vip_personal", "vip_followup", "final_notice"):
    DEFAULTS[(_name, "sms")] = MessageTemplate(body=_SMS)
    DEFAULTS[(_name, "whatsapp")] = MessageTemplate(
        body="Hi {{ customer.first_name or 'there' }}, your payment of {{ amount }} didn't go through. "
        "You can complete it here: {{ payment_link }}"
    )
DEFAULTS[("reminder_short", "sms")] = MessageTemplate(body=_SMS_REMINDER)
DEFAULTS[("reminder_short", "whatsapp")] = MessageTemplate(
    body="Hi {{ customer.first_name or 'there' }}, a reminder that {{ amount }} is still due: {{ payment_link }}"
)

#: the WhatsApp templates the demo's simulator knows as approved, in Cloud API form
WHATSAPP_TEMPLATE_BODY = "Hi {{1}}, your payment of {{2}} is still open. You can complete it here: {{3}}"


def default_template(name: str | None, channel: str) -> MessageTemplate | None:
    if name is None:
        return DEFAULTS.get(("payment_failed", channel))
    return DEFAULTS.get((name, channel)) or DEFAULTS.get(("payment_failed", channel))


def names() -> set[str]:
    return {name for name, _ in DEFAULTS}


def whatsapp_approved_templates(language: str = "en_US") -> list[dict[str, str]]:
    """The built-in templates as the WhatsApp Cloud API knows them once Meta approved them (used by the sandbox)."""
    return [
        {"name": name, "language": language, "status": "APPROVED", "body": WHATSAPP_TEMPLATE_BODY}
        for name in sorted(names())
    ]
