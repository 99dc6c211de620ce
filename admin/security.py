"""Who may see and change what in the admin: every view requires sign-in, and roles decide the rest.

Reading is decided by ``read_roles``; changing by ``write_roles`` (or a per-action ``@requires(...)``). A signed-in
person who may not change something gets **403** for the attempt, never a quiet redirect: an auditor who pokes at
a create, edit, delete or action URL must see that it was refused.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from flask import abort, redirect, render_template, request, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from flask_wtf.csrf import CSRFError

from app.accounts.pii import MASKED, Mask, mask_for

EVERYONE = ("admin", "author", "approver", "operator", "auditor")

#: Flask-Admin model-view endpoints that change rows, whatever the HTTP method
CHANGE_VIEWS = frozenset({"create_view", "edit_view", "delete_view", "action_view", "ajax_update"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

F = TypeVar("F", bound=Callable[..., Any])


def signed_in() -> bool:
    return bool(getattr(current_user, "is_authenticated", False))


def has_role(*roles: str) -> bool:
    return signed_in() and current_user.has_role(*roles)


def personal_data() -> Mask:
    """What the signed-in reader sees of customers' personal data (app.accounts.pii): whole for operators and
    admins, masked for everyone else. Pages, details, exports and the audit log's details all ask here."""
    if not signed_in():
        return MASKED
    return mask_for(r.name for r in current_user.roles)


def requires(*roles: str) -> Callable[[F], F]:
    """An exposed admin method that only these roles may call (403 for everyone else signed in)."""

    def decorate(fn: F) -> F:
        @wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if not has_role(*roles):
                abort(403)
            return fn(*args, **kwargs)

        wrapper._recoup_roles = roles  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorate


class RoleGuard:
    """Mixin for Flask-Admin views: ``read_roles`` may open the view, ``write_roles`` may change rows.

    ``read_only_posts`` names exposed methods that take a POST but change nothing (a syntax check, a preview,
    a simulation); every other POST needs a write role.
    """

    read_roles: tuple[str, ...] = EVERYONE
    write_roles: tuple[str, ...] = ("admin",)
    read_only_posts: frozenset[str] = frozenset()
    create_allowed = True
    edit_allowed = True
    delete_allowed = False
    #: who may take a list away as CSV (customers' personal data: not authors and approvers, who only read it here)
    export_roles: tuple[str, ...] = ("admin", "operator", "auditor")
    export_allowed = True

    def is_accessible(self) -> bool:
        return has_role(*self.read_roles)

    def inaccessible_callback(self, view_name: str, /, **kwargs: Any) -> Any:
        if not signed_in():
            return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
        abort(403)

    def _handle_view(self, name: str, /, **kwargs: Any) -> Any:
        # positional-only: a view's own URL arguments may include one called "name"
        refused = super()._handle_view(name)  # type: ignore[misc]
        if refused is not None:
            return refused
        if name in CHANGE_VIEWS:
            allowed = {"create_view": self.can_create, "edit_view": self.can_edit, "delete_view": self.can_delete,
                       "ajax_update": self.can_edit}.get(name, self.can_write)
            if not allowed:
                abort(403)
        elif name == "export" and not self.can_export:
            abort(403)
        elif request.method not in SAFE_METHODS and name not in self.read_only_posts and not self.can_write:
            abort(403)
        return None

    @property
    def can_write(self) -> bool:
        return has_role(*self.write_roles)

    @property
    def can_create(self) -> bool:  # type: ignore[override]
        return self.create_allowed and has_role(*self.write_roles)

    @property
    def can_edit(self) -> bool:  # type: ignore[override]
        return self.edit_allowed and has_role(*self.write_roles)

    @property
    def can_delete(self) -> bool:  # type: ignore[override]
        return self.delete_allowed and has_role(*self.write_roles)

    @property
    def can_export(self) -> bool:
        return self.export_allowed and has_role(*self.export_roles)


class CsrfForm(FlaskForm):
    """The base of every admin form: Flask-WTF's own CSRF field, so a page carries exactly one ``csrf_token``.

    CSRFProtect checks every POST app-wide; a second token of Flask-Admin's ``SecureForm`` (a different scheme
    under the same name) made the form fail validation with nothing shown. ``WTF_CSRF_ENABLED`` switches both.
    ``_obj`` is what Flask-Admin's ``Unique`` validator reads to tell the edited row from another one.
    """

    def __init__(self, formdata: Any = None, obj: Any = None, prefix: str = "", **kwargs: Any) -> None:
        self._obj = obj
        super().__init__(formdata=formdata, obj=obj, prefix=prefix, **kwargs)


def refused_as_expired(error: CSRFError) -> Any:
    """A form posted with a missing or stale token (a page left open past the token's life): 400, said in words,
    nothing saved. Outside the admin, the default answer."""
    if not request.path.startswith("/admin"):
        return error
    return render_template("admin/expired.html", reason=error.description), 400
