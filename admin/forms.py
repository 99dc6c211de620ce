"""A refused admin form says why: every error is shown next to its field, and the banner names each field and what
is wrong with it (errors on hidden fields, such as an expired CSRF token, would otherwise be shown nowhere).

Flask-Admin flashes a bare "Failed to create record." / "Failed to save record." after a failed validation; when
our explanation was flashed, that line is dropped before the page renders.
"""

from __future__ import annotations

from typing import Any

from flask import flash, g, session
from flask_admin.babel import gettext as admin_gettext
from flask_babel import gettext as _
from wtforms.widgets import HiddenInput

_EXPLAINED = "recoup_refusal_explained"


def problems(form: Any) -> list[str]:
    """"Label: message" for every error of the form, in the form's order."""
    out = []
    for field in form:
        for error in _messages(field.errors):
            if field.short_name == "csrf_token":
                out.append(_("The form had expired or came from another page; it was not saved. Submit it again."))
            else:
                out.append(f"{field.label.text}: {error}")
    return out


def _messages(errors: Any) -> list[str]:
    if isinstance(errors, dict):  # a FormField's errors by subfield
        return [m for sub in errors.values() for m in _messages(sub)]
    return [m for e in errors or () for m in ([e] if isinstance(e, str) else _messages(e))]


def explain_refusal(form: Any) -> None:
    found = problems(form)
    marked = any(f.errors and not isinstance(f.widget, HiddenInput) for f in form)
    text = "; ".join(found) if found else _("the form could not be read")
    hint = " " + _("See the fields marked in red.") if marked else ""
    flash(_("Not saved. %(problems)s", problems=text) + hint, "error")
    g.setdefault(_EXPLAINED, True)


def drop_generic_refusal() -> None:
    """Remove Flask-Admin's bare failure line when our explanation says more."""
    if not g.get(_EXPLAINED):
        return
    bare = {admin_gettext("Failed to create record."), admin_gettext("Failed to save record.")}
    kept = [(category, message) for category, message in session.get("_flashes", []) if message not in bare]
    session["_flashes"] = kept
