"""Gateway accounts: credentials are entered here, stored encrypted, shown masked, never logged or exported."""

from __future__ import annotations

from typing import Any

from flask import current_app, flash
from flask_babel import gettext as _
from flask_login import current_user
from markupsafe import Markup
from wtforms import BooleanField, PasswordField, SelectField, StringField
from wtforms.validators import URL, DataRequired, Length, Optional, Regexp

from admin.i18n import _l
from admin.security import CsrfForm
from admin.views import AuditedModelView
from app.accounts.gateway_accounts import save_account
from app.accounts.secrets import SecretsError, decrypt_credentials, mask
from app.extensions import db
from app.models import GatewayAccount

#: the secrets each gateway needs, in the order the form shows them
SECRET_FIELDS = ("security_key", "webhook_signing_key")


class GatewayAccountForm(CsrfForm):
    name = StringField(_l("Name"), validators=[DataRequired(), Length(max=64),
                                               Regexp(r"^[a-z0-9][a-z0-9_-]*$",
                                                      message=_l("lower-case letters, digits, - and _"))])
    gateway = SelectField(_l("Gateway"), choices=[("nmi", "NMI")])
    api_url = StringField(_l("API URL"), validators=[Optional(), URL(require_tld=False), Length(max=255)],
                          description=_l("Leave empty for the gateway's usual address."))
    enabled = BooleanField(_l("Fetch failed payments from this account"), default=True)
    security_key = PasswordField(_l("Security key"), description=_l("Leave empty to keep the stored one."))
    webhook_signing_key = PasswordField(_l("Webhook signing key"),
                                        description=_l("Leave empty to keep the stored one."))


class MovedWithoutSecret(Exception):
    """The account's API URL changed and its security key was not typed again."""


def stored_secrets(account: GatewayAccount) -> dict[str, str]:
    try:
        return decrypt_credentials(current_app.config, account.credentials_encrypted)
    except SecretsError:
        return {}


def _masked(view: Any, context: Any, model: GatewayAccount, name: str) -> Markup:
    secrets = stored_secrets(model)
    if not secrets:
        return Markup('<span class="text-muted">{}</span>').format(_("none stored"))
    return Markup("<br>").join(Markup("{}: <code>{}</code>").format(k, mask(v)) for k, v in sorted(secrets.items()))


class GatewayAccountView(AuditedModelView):
    read_roles = ("admin", "auditor")
    write_roles = ("admin",)
    export_roles = ("admin", "auditor")
    form = GatewayAccountForm
    column_export_list = ("name", "gateway", "api_url", "enabled", "created_at", "updated_at")  # never a secret
    column_list = ("name", "gateway", "api_url", "enabled", "credentials", "created_at")
    column_details_list = ("name", "gateway", "api_url", "enabled", "credentials", "created_at", "updated_at")
    column_labels = {"credentials": _l("Secrets (masked)"), "api_url": _l("API URL"), "enabled": _l("Fetching")}
    column_formatters = {"credentials": _masked}
    column_formatters_detail = {"credentials": _masked}

    def _credentials(self, form: GatewayAccountForm, model: GatewayAccount | None) -> dict[str, str]:
        values = stored_secrets(model) if model is not None else {}
        typed = {name: (getattr(form, name).data or "").strip() for name in SECRET_FIELDS}
        moved = model is not None and (form.api_url.data or None) != model.api_url
        if moved and values.get("security_key") and not typed.get("security_key"):
            # the security key goes to the API URL with every call: a stored one is never sent to a new address
            raise MovedWithoutSecret()
        values.update({name: value for name, value in typed.items() if value})
        return values

    def create_model(self, form: GatewayAccountForm) -> Any:
        return self._save(form, None)

    def update_model(self, form: GatewayAccountForm, model: GatewayAccount) -> Any:
        return self._save(form, model)

    def _save(self, form: GatewayAccountForm, model: GatewayAccount | None) -> Any:
        try:
            credentials = self._credentials(form, model)
            if model is not None and model.name != form.name.data:
                model.name = form.name.data
            account = save_account(form.name.data, form.gateway.data, credentials=credentials,
                                   api_url=form.api_url.data or None, actor=current_user.email)
            account.enabled = bool(form.enabled.data)
            db.session.commit()
        except MovedWithoutSecret:
            db.session.rollback()
            flash(_("The API URL changed: type the security key again (a stored key is never sent to a new "
                    "address)."), "error")
            return False
        except Exception as exc:  # the message never holds a secret: only names reach save_account's errors
            db.session.rollback()
            flash(_("Could not save the account: %(error)s", error=type(exc).__name__), "error")
            return False
        return account if model is None else True

    # AuditedModelView would log form fields; save_account already logs which secrets changed (never values)
    def on_model_change(self, form: Any, model: Any, is_created: bool) -> None:
        return None
