"""Lazily translated labels for the admin (menu names, column labels, form labels).

Flask-Babel's ``lazy_gettext`` asks the locale selector as soon as a label is looked at, and the app's selector
needs a request; labels are looked at while the admin is being built (Flask-Admin hashes menu categories), so
outside a request these give the English text and inside one the translation.
"""

from __future__ import annotations

from flask import has_request_context
from flask_babel import gettext
from flask_babel.speaklater import LazyString


def _text(text: str) -> str:
    return gettext(text) if has_request_context() else text


def _l(text: str) -> LazyString:
    return LazyString(_text, text)
