"""Submit a rendered HTML form the way a browser does: every field the page rendered, with the values it rendered,
changed only where the test types something. Then CSRF tokens, hidden fields and defaults travel exactly as they
would from Chromium, so a form that only works when a test hand-picks its fields cannot pass here."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any

PASSWORD = "correct horse battery"


@dataclass
class Form:
    action: str
    method: str
    fields: list[tuple[str, str]] = field(default_factory=list)
    options: dict[str, list[str]] = field(default_factory=dict)  # select name -> option values
    attrs: dict[str, str] = field(default_factory=dict)

    def values(self, name: str) -> list[str]:
        return [v for k, v in self.fields if k == name]

    def data(self, **typed: Any) -> list[tuple[str, str]]:
        """The fields as submitted, ``typed`` replacing a field's rendered value(s). A list sets a multi-select;
        ``True``/``False`` ticks or clears a checkbox; ``None`` leaves the field out (an unticked box)."""
        out = [(k, v) for k, v in self.fields if k not in typed]
        for name, value in typed.items():
            if value is None or value is False:
                continue
            if value is True:
                value = "y"
            for one in value if isinstance(value, list | tuple) else [value]:
                out.append((name, str(one)))
        return out


class _FormParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.forms: list[Form] = []
        self._form: Form | None = None
        self._select: str | None = None
        self._select_first: str | None = None
        self._select_chosen = False
        self._option: str | None = None
        self._textarea: str | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: (v if v is not None else "") for k, v in attrs}
        if tag == "form":
            self._form = Form(action=a.get("action", ""), method=a.get("method", "get").upper(), attrs=a)
            self.forms.append(self._form)
        if self._form is None:
            return
        name = a.get("name")
        if tag == "input" and name and "disabled" not in a:
            kind = a.get("type", "text").lower()
            if kind in ("submit", "button", "image", "reset", "file"):
                return
            if kind in ("checkbox", "radio") and "checked" not in a:
                return
            self._form.fields.append((name, a.get("value", "on" if kind in ("checkbox", "radio") else "")))
        elif tag == "select" and name and "disabled" not in a:
            self._select, self._select_first, self._select_chosen = name, None, False
            self._form.options[name] = []
            self._multiple = "multiple" in a
        elif tag == "option" and self._select:
            value = a.get("value")
            self._option = value
            self._text = []
            if value is not None:
                self._note_option(value, "selected" in a)
        elif tag == "textarea" and name and "disabled" not in a:
            self._textarea, self._text = name, []

    def _note_option(self, value: str, selected: bool) -> None:
        assert self._form is not None and self._select is not None
        self._form.options[self._select].append(value)
        if self._select_first is None:
            self._select_first = value
        if selected:
            self._form.fields.append((self._select, value))
            self._select_chosen = True

    def handle_data(self, data: str) -> None:
        if self._textarea is not None or (self._select and self._option is None):
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if self._form is None:
            return
        if tag == "option" and self._select and self._option is None:
            self._note_option("".join(self._text).strip(), False)
        if tag == "option":
            self._option = None
        elif tag == "select" and self._select:
            if not self._select_chosen and not self._multiple and self._select_first is not None:
                self._form.fields.append((self._select, self._select_first))
            self._select = None
        elif tag == "textarea" and self._textarea is not None:
            text = "".join(self._text)
            self._form.fields.append((self._textarea, text[1:] if text.startswith("\n") else text))
            self._textarea = None
        elif tag == "form":
            self._form = None


def forms(html: str) -> list[Form]:
    parser = _FormParser()
    parser.feed(html)
    return parser.forms


def the_form(html: str, *, containing: str = "csrf_token", index: int = 0) -> Form:
    """The page's ``index``-th POST form having a field named ``containing``; a Flask-Admin page's own model form
    (class ``admin-form``) comes before the menu's forms (language, sign out)."""
    posted = [f for f in forms(html) if f.method == "POST" and any(k == containing for k, _ in f.fields)]
    found = sorted(posted, key=lambda f: "admin-form" not in f.attrs.get("class", ""))
    assert len(found) > index, f"no POST form with a field {containing!r} on the page"
    return found[index]


def submit(client, url: str, *, form_index: int = 0, containing: str = "csrf_token", **typed: Any):  # type: ignore[no-untyped-def]
    """GET ``url``, then POST its form with ``typed`` changes, as a browser does (the response is not followed)."""
    page = client.get(url)
    assert page.status_code == 200, f"GET {url} gave {page.status_code}"
    form = the_form(page.get_data(as_text=True), containing=containing, index=form_index)
    target = form.action or url
    return client.post(target, data=_multidict(form.data(**typed)), content_type="application/x-www-form-urlencoded")


def _multidict(pairs: list[tuple[str, str]]):  # type: ignore[no-untyped-def]
    from werkzeug.datastructures import MultiDict

    return MultiDict(pairs)


def sign_in(client, role: str | list[str], *, name: str | None = None) -> str:  # type: ignore[no-untyped-def]
    """A new user with ``role`` signs in through the real sign-in form (its CSRF token included)."""
    from app.accounts.users import create_user

    roles = [role] if isinstance(role, str) else list(role)
    email = f"{'-'.join(roles)}-{uuid.uuid4().hex[:6]}@example.com"
    create_user(email, PASSWORD, roles, name=name)
    response = submit(client, "/login", email=email, password=PASSWORD)
    assert response.status_code == 302, response.get_data(as_text=True)[:2000]
    return email


def flashes(html: str) -> list[str]:
    """The texts of the page's alerts (flash messages), whitespace collapsed."""
    found = re.findall(r'<div class="alert[^"]*"[^>]*>(.*?)</div>', html, flags=re.S)
    return [re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", f)).replace("×", "").strip() for f in found]


def field_errors(html: str) -> dict[str, str]:
    """Errors shown next to fields (Bootstrap 4 ``invalid-feedback``), by the field's id."""
    out: dict[str, str] = {}
    for match in re.finditer(r'id="([^"]+)"[^>]*class="[^"]*is-invalid|class="[^"]*is-invalid[^"]*"[^>]*id="([^"]+)"',
                             html):
        out[match.group(1) or match.group(2)] = ""
    for fid in list(out):
        after = html[html.find(f'id="{fid}"'):]
        feedback = re.search(r'class="[^"]*invalid-feedback[^"]*"[^>]*>(.*?)</', after, flags=re.S)
        out[fid] = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", feedback.group(1))).strip() if feedback else ""
    return out
