"""Built-in message templates in English and Spanish: what customers receive until the merchant writes their own.

Each is a Jinja2 template for the sandboxed environment in app.messages.templating, keyed by (name, channel,
language). A
template the merchant saves in the admin overrides the built-in of the same name, channel and language only; the
built-in stays known (policies may name it) and goes on serving the other languages and channels.

- Email: a subject and a text. The HTML part is the branded layout (app.messages.templating.branded_html): the
merchant's
  logo and colour, and the paragraph that is only ``{{ payment_link }}`` becomes the pay button.
- SMS: one GSM-7 segment (160 characters) with a realistic merchant name, amount and short link: no á, í, ó, ú
  (they are not GSM-7 and would make every SMS UCS-2, 70 characters a segment). Each names the brand and says
  how to opt out.
- WhatsApp: business-initiated messages go as templates Meta approved; these bodies are what the approved templates
  say, and each ``{{ ... }}`` becomes a positional parameter in order of appearance (see
  :func:`whatsapp_approved_templates`, which is what the sandbox knows as approved).
"""

from __future__ import annotations

from app.messages.templating import MessageTemplate
from rules.vocabulary import Channel

LANGUAGES = ("en", "es")
DEFAULT_LANGUAGE = "en"
FALLBACK_NAME = "payment_failed"  # what a policy's unknown template name falls back to at send time

# -- English -----------------------------------------------------------------------------------------------------
_HI = "Hi {{ customer.first_name or 'there' }},"
_EN_FOOTER = "\n\nIf you have already paid, please ignore this message.\n{{ merchant.name }}"
_EN_EMAIL = {
    "payment_failed": (
        "Your payment of {{ amount }} to {{ brand }} didn't go through",
        f"{_HI}\n\nWe tried to charge {{{{ amount }}}} for {{{{ transaction.description or 'your order' }}}}, but "
        "the payment didn't go through. It only takes a minute to fix:\n\n{{ payment_link }}",
    ),
    "vip_personal": (
        "{{ customer.first_name or 'Hello' }}, a quick note about your payment",
        f"{_HI}\n\nYour recent payment of {{{{ amount }}}} didn't go through. As one of our valued customers, "
        "we've kept everything in place for you. You can complete it here:\n\n{{ payment_link }}\n\n"
        "Reply to this email if we can help.",
    ),
    "vip_followup": (
        "Still here to help with your {{ amount }} payment",
        f"{_HI}\n\nJust following up: your payment of {{{{ amount }}}} is still open. Complete it whenever suits "
        "you:\n\n{{ payment_link }}",
    ),
    "reminder_short": (
        "Reminder: {{ amount }} payment pending",
        f"{_HI}\n\nYour payment of {{{{ amount }}}} is still pending. Pay here:\n\n{{{{ payment_link }}}}",
    ),
    "final_notice": (
        "Last reminder about your {{ amount }} payment",
        f"{_HI}\n\nThis is our last reminder about your payment of {{{{ amount }}}}. If you'd like to keep your "
        "order, please complete it here:\n\n{{ payment_link }}",
    ),
}
_EN_STOP = "\nReply STOP to opt out."
_EN_SMS_FAILED = "{{ brand }}: your payment of {{ amount }} didn't go through. Pay securely: {{ payment_link }}"
_EN_SMS = {
    "payment_failed": _EN_SMS_FAILED,
    "vip_personal": _EN_SMS_FAILED,
    "vip_followup": "{{ brand }}: your payment of {{ amount }} is still open. Pay securely: {{ payment_link }}",
    "reminder_short": "{{ brand }}: reminder, {{ amount }} is still due. Pay here: {{ payment_link }}",
    "final_notice": "{{ brand }}: last reminder, {{ amount }} is still due. Pay here: {{ payment_link }}",
}
_EN_WA_HI = "Hi {{ customer.first_name or 'there' }}"
_EN_WA_FAILED = (f"{_EN_WA_HI}, your payment of {{{{ amount }}}} to {{{{ brand }}}} didn't go through. You can "
                 "complete it securely here: {{ payment_link }}")
_EN_WHATSAPP = {
    "payment_failed": _EN_WA_FAILED,
    "vip_personal": _EN_WA_FAILED,
    "vip_followup": f"{_EN_WA_HI}, your payment of {{{{ amount }}}} to {{{{ brand }}}} is still open. You can "
                    "complete it here whenever suits you: {{ payment_link }}",
    "reminder_short": f"{_EN_WA_HI}, a reminder that your payment of {{{{ amount }}}} to {{{{ brand }}}} is still "
                      "due: {{ payment_link }}",
    "final_notice": f"{_EN_WA_HI}, this is our last reminder about your payment of {{{{ amount }}}} to "
                    "{{ brand }}. You can complete it here: {{ payment_link }}",
}

# -- Spanish (usted, as the payment page) ------------------------------------------------------------------------
_HOLA = "Hola{% if customer.first_name %}, {{ customer.first_name }}{% endif %}:"
_ES_FOOTER = "\n\nSi ya ha pagado, ignore este mensaje.\n{{ merchant.name }}"
_ES_EMAIL = {
    "payment_failed": (
        "Su pago de {{ amount }} a {{ brand }} no se ha completado",
        f"{_HOLA}\n\nIntentamos cobrar {{{{ amount }}}} por {{{{ transaction.description or 'su pedido' }}}}, pero "
        "el pago no se ha podido completar. Solucionarlo solo lleva un minuto:\n\n{{ payment_link }}",
    ),
    "vip_personal": (
        "{{ customer.first_name or 'Hola' }}, una nota sobre su pago",
        f"{_HOLA}\n\nSu pago reciente de {{{{ amount }}}} no se ha podido completar. Como cliente preferente, lo "
        "hemos dejado todo preparado para usted. Puede completarlo aquí:\n\n{{ payment_link }}\n\n"
        "Responda a este correo si podemos ayudarle.",
    ),
    "vip_followup": (
        "Seguimos aquí para ayudarle con su pago de {{ amount }}",
        f"{_HOLA}\n\nLe escribimos de nuevo: su pago de {{{{ amount }}}} sigue pendiente. Complételo cuando le "
        "venga bien:\n\n{{ payment_link }}",
    ),
    "reminder_short": (
        "Recordatorio: pago de {{ amount }} pendiente",
        f"{_HOLA}\n\nSu pago de {{{{ amount }}}} sigue pendiente. Puede pagar aquí:\n\n{{{{ payment_link }}}}",
    ),
    "final_notice": (
        "Último recordatorio sobre su pago de {{ amount }}",
        f"{_HOLA}\n\nEste es nuestro último recordatorio sobre su pago de {{{{ amount }}}}. Si desea conservar su "
        "pedido, complételo aquí:\n\n{{ payment_link }}",
    ),
}
_ES_STOP = "\nBaja: responda STOP"
_ES_SMS_FAILED = "{{ brand }}: su pago de {{ amount }} no se pudo completar. Pago seguro en {{ payment_link }}"
_ES_SMS = {
    "payment_failed": _ES_SMS_FAILED,
    "vip_personal": _ES_SMS_FAILED,
    "vip_followup": "{{ brand }}: su pago de {{ amount }} sigue pendiente. Pago seguro en {{ payment_link }}",
    "reminder_short": "{{ brand }}: recordatorio, su pago de {{ amount }} sigue pendiente. Pague en {{ payment_link }}",
    "final_notice": "{{ brand }}: aviso final, su pago de {{ amount }} sigue pendiente. Pague en {{ payment_link }}",
}
_ES_WA_HOLA = "{{ customer.first_name or 'Hola' }}"
_ES_WA_FAILED = (f"{_ES_WA_HOLA}, su pago de {{{{ amount }}}} a {{{{ brand }}}} no se ha podido completar. Puede "
                 "completarlo de forma segura aquí: {{ payment_link }}")
_ES_WHATSAPP = {
    "payment_failed": _ES_WA_FAILED,
    "vip_personal": _ES_WA_FAILED,
    "vip_followup": f"{_ES_WA_HOLA}, su pago de {{{{ amount }}}} a {{{{ brand }}}} sigue pendiente. Puede "
                    "completarlo aquí cuando le venga bien: {{ payment_link }}",
    "reminder_short": f"{_ES_WA_HOLA}, le recordamos que su pago de {{{{ amount }}}} a {{{{ brand }}}} sigue "
                      "pendiente: {{ payment_link }}",
    "final_notice": f"{_ES_WA_HOLA}, este es nuestro último recordatorio sobre su pago de {{{{ amount }}}} a "
                    "{{ brand }}. Puede completarlo aquí: {{ payment_link }}",
}


def _catalogue() -> dict[tuple[str, str, str], MessageTemplate]:
    out: dict[tuple[str, str, str], MessageTemplate] = {}
    for language, email, footer, sms, stop, whatsapp in (
        ("en", _EN_EMAIL, _EN_FOOTER, _EN_SMS, _EN_STOP, _EN_WHATSAPP),
        ("es", _ES_EMAIL, _ES_FOOTER, _ES_SMS, _ES_STOP, _ES_WHATSAPP),
    ):
        for name, (subject, body) in email.items():
            out[(name, Channel.EMAIL.value, language)] = MessageTemplate(body=body + footer, subject=subject,
                                                                         locale=language)
            out[(name, Channel.SMS.value, language)] = MessageTemplate(body=sms[name] + stop, locale=language)
            out[(name, Channel.WHATSAPP.value, language)] = MessageTemplate(body=whatsapp[name], locale=language)
    return out


DEFAULTS: dict[tuple[str, str, str], MessageTemplate] = _catalogue()


def language_of(locale: str | None) -> str:
    return (locale or DEFAULT_LANGUAGE).replace("-", "_").split("_")[0].lower() or DEFAULT_LANGUAGE


def builtin(name: str, channel: str, locale: str | None) -> MessageTemplate | None:
    """The built-in template of exactly this name and channel in the locale's language, if there is one."""
    return DEFAULTS.get((name, channel, language_of(locale)))


def default_template(name: str | None, channel: str, locale: str | None = None) -> MessageTemplate | None:
    """The built-in a customer in ``locale`` gets: this name in their language, else in English; an unknown name
    gets ``payment_failed`` the same way."""
    for candidate in (name or FALLBACK_NAME, FALLBACK_NAME):
        for language in (language_of(locale), DEFAULT_LANGUAGE):
            found = DEFAULTS.get((candidate, channel, language))
            if found is not None:
                return found
    return None


def names() -> set[str]:
    return {name for name, _, _ in DEFAULTS}


def whatsapp_language(locale: str | None) -> str:
    """The Cloud API's code for a template's locale or language, as messages are sent with it: en_US for English
    (and for none), else the language alone (``es_ES`` and ``es`` -> ``es``)."""
    return locale.split("_")[0] if locale and not locale.startswith("en") else "en_US"


def whatsapp_approved_templates() -> list[dict[str, str]]:
    """The built-in WhatsApp templates as the Cloud API knows them once Meta approved them (used by the sandbox)."""
    from app.messages.templates_service import whatsapp_body

    return [
        {"name": name, "language": whatsapp_language(language), "status": "APPROVED",
         "body": whatsapp_body(template.body).text}
        for (name, channel, language), template in sorted(DEFAULTS.items())
        if channel == Channel.WHATSAPP
    ]
