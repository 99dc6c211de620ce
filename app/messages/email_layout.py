"""The branded HTML part of an email whose template has no HTML of its own: the merchant's logo (or name) in their
colour, the text's paragraphs, and a clear pay button where the text has the payment link on a line of its own.

Built from the rendered text, so a merchant who changes a template's words keeps the layout and the button. Inline
styles and a table layout: what mail clients render. Pure: no Flask, no database.
"""

from __future__ import annotations

import html as html_lib
import re
from typing import Any

from app.messages.colours import ink_on_white, normal_colour, text_on

_URL = re.compile(r"https?://[^\s<>\"']+[^\s<>\"'.,;:!?)]")

WORDS = {
    "en": {"pay": "Pay {amount}", "pay_plain": "Pay now", "copy": "Button not working? Use this link:",
           "help": "Questions? Write to {email}.", "unsubscribe": "Stop these emails"},
    "es": {"pay": "Pagar {amount}", "pay_plain": "Pagar ahora", "copy": "¿No funciona el botón? Use este enlace:",
           "help": "¿Preguntas? Escríbanos a {email}.", "unsubscribe": "No recibir más estos correos"},
}


def branded_html(text: str, variables: dict[str, Any], language: str = "en") -> str:
    """The HTML for a rendered text; ``variables`` are the template's (app.messages.templating.build_context)."""
    words = WORDS.get(language, WORDS["en"])
    merchant = variables.get("merchant") or {}
    colour = normal_colour(merchant.get("brand_colour"))
    link = str(variables.get("payment_link") or "")
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", text.strip()) if p.strip()]
    body = "\n".join(
        _button(link, words, variables, colour) if link and paragraph == link else _paragraph(paragraph, colour)
        for paragraph in paragraphs
    )
    return (
        '<!DOCTYPE html><html lang="' + html_lib.escape(language) + '"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html_lib.escape(str(merchant.get('name') or ''))}</title></head>"
        '<body style="margin:0;padding:0;background:#f3f4f6">'
        '<table role="presentation" width="100%" cellpadding="0" cellspacing="0" style="background:#f3f4f6">'
        '<tr><td align="center" style="padding:24px 12px">'
        '<table role="presentation" width="100%" cellpadding="0" cellspacing="0" style="max-width:560px">'
        + _header(merchant, colour)
        + '<tr><td style="background:#ffffff;border-radius:0 0 12px 12px;padding:28px 28px 20px;'
        'font-family:Arial,Helvetica,sans-serif;font-size:16px;line-height:1.5;color:#111827">'
        + body
        + "</td></tr>"
        + _footer(merchant, variables, words, colour)
        + "</table></td></tr></table></body></html>"
    )


def _header(merchant: dict[str, Any], colour: str) -> str:
    name = html_lib.escape(str(merchant.get("name") or ""))
    logo = str(merchant.get("logo_url") or "")
    if logo and _URL.fullmatch(logo):
        inner = (f'<img src="{html_lib.escape(logo)}" alt="{name}" height="40" '
                 'style="display:block;height:40px;max-width:220px;border:0">')
    else:
        inner = (f'<span style="font-family:Arial,Helvetica,sans-serif;font-size:20px;font-weight:bold;'
                 f'color:{text_on(colour)}">{name}</span>')
    background = colour if not (logo and _URL.fullmatch(logo)) else "#ffffff"
    return (f'<tr><td style="background:{background};border-top:6px solid {colour};border-radius:12px 12px 0 0;'
            f'padding:18px 28px">{inner}</td></tr>')


def _paragraph(paragraph: str, colour: str) -> str:
    escaped = html_lib.escape(paragraph)
    ink = ink_on_white(colour)
    linked = _URL.sub(lambda m: f'<a href="{m.group(0)}" style="color:{ink}">{m.group(0)}</a>', escaped)
    return '<p style="margin:0 0 16px">' + linked.replace("\n", "<br>\n") + "</p>"


def _button(link: str, words: dict[str, str], variables: dict[str, Any], colour: str) -> str:
    amount = str(variables.get("amount") or "")
    label = html_lib.escape(words["pay"].format(amount=amount) if amount else words["pay_plain"])
    href = html_lib.escape(link)
    return (
        '<table role="presentation" cellpadding="0" cellspacing="0" style="margin:8px 0 20px">'
        f'<tr><td style="background:{colour};border-radius:8px">'
        f'<a href="{href}" style="display:inline-block;padding:14px 28px;font-family:Arial,Helvetica,sans-serif;'
        f'font-size:18px;font-weight:bold;color:{text_on(colour)};text-decoration:none;border-radius:8px">{label}</a>'
        "</td></tr></table>"
        f'<p style="margin:0 0 16px;font-size:13px;color:#4b5563">{html_lib.escape(words["copy"])}<br>'
        f'<a href="{href}" style="color:{ink_on_white(colour)};word-break:break-all">{href}</a></p>'
    )


def _footer(merchant: dict[str, Any], variables: dict[str, Any], words: dict[str, str], colour: str) -> str:
    ink = ink_on_white(colour)
    parts = []
    website = str(merchant.get("website") or "")
    if website and _URL.fullmatch(website):
        shown = html_lib.escape(re.sub(r"^https?://", "", website).rstrip("/"))
        parts.append(f'<a href="{html_lib.escape(website)}" style="color:{ink}">{shown}</a>')
    email = str(merchant.get("support_email") or "")
    if email:
        address = html_lib.escape(email)
        parts.append(html_lib.escape(words["help"]).replace(
            html_lib.escape("{email}"), f'<a href="mailto:{address}" style="color:{ink}">{address}</a>'))
    unsubscribe = str(variables.get("unsubscribe_link") or "")
    if unsubscribe and _URL.fullmatch(unsubscribe):
        parts.append(f'<a href="{html_lib.escape(unsubscribe)}" style="color:#4b5563">'
                     f'{html_lib.escape(words["unsubscribe"])}</a>')
    if not parts:
        return ""
    return ('<tr><td style="padding:16px 28px;font-family:Arial,Helvetica,sans-serif;font-size:13px;'
            'line-height:1.5;color:#4b5563;text-align:center">' + " · ".join(parts) + "</td></tr>")
