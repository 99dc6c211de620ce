"""Channel accounts (email, SMS, WhatsApp): credentials entered here, stored encrypted, shown masked, never logged."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from flask import current_app, flash
from flask_babel import gettext as _
from flask_login import current_user
from markupsafe import Markup
from wtforms import BooleanField, PasswordField, SelectField, StringField
from wtforms.validators import DataRequired, Length, Optional, Regexp

from admin.i18n import _l
from admin.security import CsrfForm
from admin.ui import CHANNEL_LABELS
from admin.views import AuditedModelView
from app.accounts.channel_accounts import (
    CHANNEL_FIELDS,
    ChannelAccountError,
    credentials_of,
    delete_channel_account,
    enabled_account,
    save_channel_account,
)
from app.accounts.secrets import mask
from app.models import ChannelAccount
from rules.vocabulary import Channel

KEEP = _l("Leave empty to keep the stored one.")
SETTING_NAMES = tuple(dict.fromkeys(f for c in CHANNEL_FIELDS.values() for f in c.settings))
SECRET_NAMES = tuple(dict.fromkeys(f for c in CHANNEL_FIELDS.values() for f in c.secrets))


class ChannelAccountForm(CsrfForm):
    name = StringField(_l("Name"), validators=[DataRequired(), Length(max=64),
                                               Regexp(r"^[a-z0-9][a-z0-9_-]*$",
                                                      message=_l("lower-case letters, digits, - and _"))])
    channel = SelectField(_l("Channel"), choices=[(c.value, CHANNEL_LABELS[c]) for c in Channel])
    enabled = BooleanField(_l("Use this account for sending"), default=True,
                           description=_l("The enabled account of a channel wins over the server's environment."))
    # email
    smtp_url = PasswordField(_l("Email: SMTP URL"), validators=[Optional()],
                             description=_l("smtp://user:password@host:587 or smtps://… Leave empty to keep the "
                                            "stored one."))
    from_address = StringField(_l("Email: sender"), validators=[Optional(), Length(max=255)],
                               description=_l("For example Shop <billing@example.com>"))
    # sms (Twilio)
    account_sid = StringField(_l("SMS: Twilio account SID"), validators=[Optional(), Length(max=64)])
    auth_token = PasswordField(_l("SMS: Twilio auth token"), validators=[Optional()], description=KEEP)
    from_number = StringField(_l("SMS: from number or messaging service (MG…)"),
                              validators=[Optional(), Length(max=64)])
    # whatsapp (Cloud API)
    phone_number_id = StringField(_l("WhatsApp: phone number id"), validators=[Optional(), Length(max=64)])
    waba_id = StringField(_l("WhatsApp: business account id (for templates)"),
                          validators=[Optional(), Length(max=64)])
    token = PasswordField(_l("WhatsApp: access token"), validators=[Optional()], description=KEEP)
    app_secret = PasswordField(_l("WhatsApp: app secret (webhook signatures)"), validators=[Optional()],
                               description=KEEP)
    verify_token = PasswordField(_l("WhatsApp: webhook verify token"), validators=[Optional()], description=KEEP)
    api_url = StringField(_l("API URL (empty: the provider's)"), validators=[Optional(), Length(max=255)])


def _masked(view: Any, context: Any, model: ChannelAccount, name: str) -> Markup:
    secrets = credentials_of(model)
    if not secrets:
        return Markup('<span class="text-muted">{}</span>').format(_("none stored"))
    return Markup("<br>").join(Markup("{}: <code>{}</code>").format(k, mask(v)) for k, v in sorted(secrets.items()))


def _settings(view: Any, context: Any, model: ChannelAccount, name: str) -> Markup:
    items = sorted((model.settings or {}).items())
    if not items:
        return Markup("—")
    return Markup("<br>").join(Markup("{}: <code>{}</code>").format(k, v) for k, v in items)


@dataclass(frozen=True)
class EnvironmentChannel:
    """A channel the server's environment configures (app.outbox.senders builds its sender when no account is
    enabled)."""

    channel: str
    provider: str
    variables: str
    detail: str
    replaced_by: str | None  # the enabled account that wins over it


#: channel -> (provider, the variables that configure it, the config keys all of which must be set)
ENVIRONMENT = {
    Channel.EMAIL: ("SMTP", "SMTP_URL, MAIL_FROM", ("SMTP_URL",)),
    Channel.SMS: ("Twilio", "TWILIO_*", ("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "TWILIO_FROM")),
    Channel.WHATSAPP: ("WhatsApp Cloud API", "WHATSAPP_*", ("WHATSAPP_TOKEN", "WHATSAPP_PHONE_NUMBER_ID")),
}


def environment_channels(config: Any) -> list[EnvironmentChannel]:
    """The channels that work from the environment, what they send from (never a secret), and whether an enabled
    account here replaces them."""
    found = []
    for channel, (provider, variables, needed) in ENVIRONMENT.items():
        if not all(config.get(key) for key in needed):
            continue
        account = enabled_account(channel)
        found.append(EnvironmentChannel(channel, provider, variables, _sends_from(channel, config),
                                        account.name if account else None))
    return found


def _sends_from(channel: str, config: Any) -> str:
    if channel == Channel.EMAIL:
        host = urlsplit(config["SMTP_URL"]).hostname or "?"
        return _("from %(sender)s through %(host)s", sender=config.get("MAIL_FROM") or "—", host=host)
    if channel == Channel.SMS:
        return _("from %(number)s", number=config["TWILIO_FROM"])
    return _("phone number id %(id)s", id=config["WHATSAPP_PHONE_NUMBER_ID"])


class ChannelAccountView(AuditedModelView):
    read_roles = ("admin", "auditor")
    write_roles = ("admin",)
    export_roles = ("admin", "auditor")
    delete_allowed = True
    form = ChannelAccountForm
    list_template = "admin/channels/list.html"
    column_export_list = ("name", "channel", "enabled", "settings", "created_at", "updated_at")
    column_formatters_export = {"settings": lambda v, c, m, n: m.settings or {}}
    column_list = ("name", "channel", "enabled", "settings", "credentials", "updated_at")
    column_details_list = ("name", "channel", "enabled", "settings", "credentials", "created_at", "updated_at")
    column_labels = {"name": _l("Name"), "channel": _l("Channel"), "enabled": _l("Sending"),
                     "settings": _l("Settings"), "credentials": _l("Secrets (masked)"),
                     "updated_at": _l("Changed"), "created_at": _l("Created")}
    column_formatters = {"settings": _settings, "credentials": _masked}
    column_formatters_detail = {"settings": _settings, "credentials": _masked}
    column_searchable_list = ("name",)
    column_filters = ("channel", "enabled")

    def render(self, template: str, **kwargs: Any) -> Any:
        kwargs.setdefault("environment_channels", environment_channels(current_app.config))
        return super().render(template, **kwargs)

    def on_form_prefill(self, form: ChannelAccountForm, id: Any) -> None:
        model = self.get_one(id)
        for name in SETTING_NAMES:
            getattr(form, name).data = (model.settings or {}).get(name, "")
        for name in SECRET_NAMES:  # a password field is never sent back to the browser
            getattr(form, name).data = ""

    def create_model(self, form: ChannelAccountForm) -> Any:
        return self._save(form, None)

    def update_model(self, form: ChannelAccountForm, model: ChannelAccount) -> Any:
        return self._save(form, model)

    def _save(self, form: ChannelAccountForm, model: ChannelAccount | None) -> Any:
        from app.extensions import db

        fields = CHANNEL_FIELDS[form.channel.data]
        settings = {name: getattr(form, name).data or "" for name in fields.settings}
        typed = {name: getattr(form, name).data or "" for name in fields.secrets}
        try:
            account = save_channel_account(form.name.data, form.channel.data, settings=settings, credentials=typed,
                                           enabled=bool(form.enabled.data), actor=current_user.email, account=model)
        except ChannelAccountError as exc:  # names fields, never values
            db.session.rollback()
            flash(_("Could not save the account: %(error)s", error=str(exc)), "error")
            return False
        except Exception as exc:  # a value could be in the text: only the kind of error is shown
            db.session.rollback()
            flash(_("Could not save the account: %(error)s", error=type(exc).__name__), "error")
            return False
        return account if model is None else True

    def delete_model(self, model: ChannelAccount) -> bool:
        delete_channel_account(model, actor=current_user.email)
        return True

    # save_channel_account writes the audit entry (names only); the generic one would list form fields
    def on_model_change(self, form: Any, model: Any, is_created: bool) -> None:
        return None

    def on_model_delete(self, model: Any) -> None:
        return None
