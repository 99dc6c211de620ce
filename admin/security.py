"""Who may see and change what in the admin: every view requires sign-in, and roles decide the rest."""

from __future__ import annotations

from typing import Any

from flask import abort, redirect, request, url_for
from flask_login import current_user

EVERYONE = ("admin", "author", "approver", "operator", "auditor")


def signed_in() -> bool:
    return bool(getattr(current_user, "is_authenticated", False))


def has_role(*roles: str) -> bool:
    return signed_in() and current_user.has_role(*roles)


class RoleGuard:
    """Mixin for Flask-Admin views: ``read_roles`` may open the view, ``write_roles`` may change rows."""

    read_roles: tuple[str, ...] = EVERYONE
    write_roles: tuple[str, ...] = ("admin",)
    create_allowed = True
    edit_allowed = True
    delete_allowed = False

    def is_accessible(self) -> bool:
        return has_role(*self.read_roles)

    def inaccessible_callback(self, name: str, **kwargs: Any) -> Any:
        if not signed_in():
            return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
        abort(403)

    @property
    def can_create(self) -> bool:  # type: ignore[override]
        return self.create_allowed and has_role(*self.write_roles)

    @property
    def can_edit(self) -> bool:  # type: ignore[override]
        return self.edit_allowed and has_role(*self.write_roles)

    @property
    def can_delete(self) -> bool:  # type: ignore[override]
        return self.delete_allowed and has_role(*self.write_roles)
