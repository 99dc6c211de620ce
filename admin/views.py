"""Flask-Admin views over the models, for business users, operators and auditors, and the menu that holds them."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import sqlalchemy as sa
from flask import request
from flask_admin import AdminIndexView, expose
from flask_admin.contrib.sqla import ModelView
from flask_admin.contrib.sqla import filters as sqla_filters
from flask_admin.helpers import is_form_submitted
from flask_admin.model import typefmt
from flask_login import current_user
from markupsafe import Markup

from admin import export
from admin.forms import drop_generic_refusal, explain_refusal
from admin.i18n import _l
from admin.security import EVERYONE, CsrfForm, RoleGuard, personal_data
from admin.ui import day, when
from app.audit import record, verify_chain
from app.extensions import db
from app.models import AuditEntry, OutboxMessage, RecoveryCase, Transaction
from app.outbox.states import OutboxState
from app.payments.money import format_minor
from rules.case_states import CaseState


class HomeView(RoleGuard, AdminIndexView):
    read_roles = EVERYONE

    @expose("/")
    def index(self) -> Any:
        counts = dict(
            db.session.execute(sa.select(RecoveryCase.state, sa.func.count()).group_by(RecoveryCase.state)).all()
        )
        recovered = db.session.scalar(
            sa.select(sa.func.coalesce(sa.func.sum(RecoveryCase.recovered_amount_minor), 0)).where(
                RecoveryCase.state == CaseState.RECOVERED
            )
        )
        scheduled = db.session.scalar(
            sa.select(sa.func.count()).select_from(OutboxMessage).where(OutboxMessage.state == OutboxState.SCHEDULED)
        )
        from flask import current_app

        from admin import dashboard
        from app.analytics import report
        from app.clock import business_now

        if current_app.config.get("DEMO_MODE"):  # the demo's clock jumps: count what it did before showing it
            from app.demo.control import count_for_the_dashboard

            count_for_the_dashboard()
        page = dashboard.build(business_now().date())
        return self.render("admin/home.html", counts=counts, recovered_minor=recovered or 0, scheduled=scheduled,
                           case_states=[s.value for s in CaseState], page=page, dash=dashboard,
                           charts=dashboard.chart_data(page), dash_min_sample=report.MIN_SAMPLE,
                           min_holdout=report.MIN_HOLDOUT)


    @expose("/export/<kind>.<fmt>")
    def export(self, kind: str, fmt: str) -> Any:
        """One of the dashboard's tables with the page's filters, as CSV (streamed) or XLSX; written to the audit
        log like every export."""
        from flask import Response, abort
        from werkzeug.utils import secure_filename

        from admin import dashboard
        from app.clock import business_now

        if kind not in dashboard.EXPORTS or fmt not in ("csv", "xlsx"):
            abort(404)
        export.audit(current_user.email, f"dashboard.{kind}")
        page = dashboard.build(business_now().date())
        table = dashboard.export_table(kind, page)
        name = export.file_name(f"dashboard-{kind}", fmt)
        if fmt == "csv":
            return export.csv_response([[export.safe(export.text(v)) for v in row] for row in table], name)
        return Response(dashboard.xlsx_bytes(table, kind), headers={
            "Content-Disposition": f"attachment;filename={secure_filename(name)}"},
            mimetype="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")


def _when_cell(view: Any, value: datetime, name: str) -> str:
    return when(value)


def _day_cell(view: Any, value: date, name: str) -> str:
    return day(value)


class AuditedModelView(RoleGuard, ModelView):
    """Every change through the admin is written to the audit log, in the same transaction. Every list exports
    as CSV (see admin.export); a refused form says why, field by field."""

    form_base_class = CsrfForm  # one CSRF token per form: Flask-WTF's, which CSRFProtect checks
    page_size = 50
    can_view_details = True
    export_types = ["csv"]  # who may export: RoleGuard.can_export (export_roles)
    column_type_formatters = {**typefmt.BASE_FORMATTERS, datetime: _when_cell, date: _day_cell}
    column_type_formatters_detail = {**typefmt.DETAIL_FORMATTERS, datetime: _when_cell, date: _day_cell}

    def on_model_change(self, form: Any, model: Any, is_created: bool) -> None:
        changed = {name: export.text(field.data)[:200] for name, field in form._fields.items()
                   if name not in self.audit_hidden_fields and name != "csrf_token"
                   and field.data != field.object_data}
        record(current_user.email, f"{model.__tablename__}.{'create' if is_created else 'update'}",
               model.__tablename__, getattr(model, "id", None), {"changed": changed})

    def on_model_delete(self, model: Any) -> None:
        record(current_user.email, f"{model.__tablename__}.delete", model.__tablename__, getattr(model, "id", None))

    audit_hidden_fields: tuple[str, ...] = ()

    # -- customers' personal data (app.accounts.pii): masked for the roles that do not work with customers ----------
    #: column -> the kind of personal data it holds; its value is masked for those readers in the list, the details
    #: and the CSV export alike, and the list is not sorted by it for them (the order would tell the hidden value)
    pii_columns: dict[str, str] = {}
    #: the view's search looks only at personal data: not offered to readers who see it masked (a search would tell
    #: them whether someone is a customer)
    pii_search = False

    def _get_field_value(self, model: Any, name: Any) -> Any:
        value = super()._get_field_value(model, name)
        kind = self.pii_columns.get(name)
        return personal_data().value(kind, value) if kind else value

    def _apply_sorting(self, query: Any, joins: Any, sort_column: Any, sort_desc: bool) -> Any:
        if sort_column in self.pii_columns and not personal_data().full:
            sort_column = None
        return super()._apply_sorting(query, joins, sort_column, sort_desc)

    @property
    def _search_supported(self) -> bool:  # type: ignore[override]
        configured = bool(self.__dict__.get("_search_configured"))
        return configured and (not self.pii_search or personal_data().full)

    @_search_supported.setter
    def _search_supported(self, value: bool) -> None:  # Flask-Admin sets it once, from init_search()
        self.__dict__["_search_configured"] = value

    def validate_form(self, form: Any) -> bool:
        valid = bool(super().validate_form(form))
        if not valid and is_form_submitted() and request.endpoint in (f"{self.endpoint}.create_view",
                                                                      f"{self.endpoint}.edit_view"):
            explain_refusal(form)
        return valid

    def render(self, template: str, **kwargs: Any) -> Any:
        drop_generic_refusal()
        return super().render(template, **kwargs)

    # -- CSV export (admin.export): plain values, money as decimals, times ISO UTC, audited ------------------------
    def get_export_columns(self) -> list[tuple[str, str]]:
        return export.columns_with_currency(self, super().get_export_columns())

    def get_export_value(self, model: Any, name: str) -> Any:
        return export.cell(self, model, name)

    def get_export_name(self, export_type: str = "csv") -> str:
        return export.file_name(self.endpoint, export_type)

    def _export_data(self) -> Any:
        export.audit(current_user.email, self.model.__tablename__)
        return super()._export_data()

    def _export_csv(self, return_url: Any) -> Any:
        # every cell is computed here, inside the request and its database session; Flask-Admin's own streamed
        # rows were computed after the view returned, where labels and related rows could no longer be read
        _count, rows = self._export_data()
        return export.csv_response(export.table(self, rows), self.get_export_name("csv"))


class ReadOnlyView(AuditedModelView):
    create_allowed = edit_allowed = delete_allowed = False


class TransactionView(ReadOnlyView):
    """Failed payments only: the sales history and refunds fetched beside them (``status`` approved / refunded)
    are facts for the planner, not failures anyone has to look at."""

    column_list = ("id", "gateway", "gateway_transaction_id", "order_id", "customer", "amount", "value_band",
                   "decline_code", "decline_reason", "product_type", "failed_at")
    column_labels = {"gateway_transaction_id": _l("Gateway id"), "order_id": _l("Order"), "customer": _l("Customer"),
                     "amount": _l("Amount"), "value_band": _l("Value band"), "decline_code": _l("Decline code"),
                     "decline_reason": _l("Decline reason"), "product_type": _l("Product"),
                     "failed_at": _l("Failed at"), "order_description": _l("Order description"),
                     "decline_text": _l("Decline text"), "merchant_advice_code": _l("Merchant advice code"),
                     "decline_kind": _l("Decline kind"), "card_masked": _l("Card"),
                     "is_first_payment": _l("First payment"), "modified_at": _l("Changed at the gateway"),
                     "created_at": _l("Fetched")}
    column_filters = ("gateway", "decline_reason", "decline_kind", "value_band", "product_type")
    column_searchable_list = ("gateway_transaction_id", "order_id")
    pii_columns = {"customer": "customer", "order_description": "text"}
    column_formatters = {"amount": lambda v, c, m, n: format_minor(m.amount_minor, m.currency)}
    column_details_list = ("id", "gateway", "gateway_transaction_id", "order_id", "order_description", "customer",
                           "amount", "value_band", "decline_code", "decline_text", "merchant_advice_code",
                           "decline_reason", "decline_kind", "product_type", "card_masked", "is_first_payment",
                           "failed_at", "modified_at", "created_at")

    def get_query(self) -> Any:
        return super().get_query().filter(Transaction.status == FAILED)

    def get_count_query(self) -> Any:
        return super().get_count_query().filter(Transaction.status == FAILED)

    def get_one(self, id: Any) -> Any:
        row = super().get_one(id)
        return row if row is not None and row.status == FAILED else None


class OutboxView(ReadOnlyView):
    column_list = ("id", "case_id", "channel", "template", "variant", "state", "scheduled_for", "sent_at",
                   "policy_version_id", "rule_line")
    column_labels = {"case_id": _l("Case"), "rule_line": _l("Policy line"), "policy_version_id": _l("Policy version")}
    column_filters = ("channel", "state", "priority", "variant")
    column_default_sort = ("scheduled_for", True)
    pii_columns = {"address": "contact", "error_text": "text", "customer": "customer"}


FAILED = "failed"  # Transaction.status of a failed payment (the others: approved, refunded)


def _utc_midnight(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=UTC)


class AuditFrom(sqla_filters.DateGreaterFilter):
    """Entries on or after a day (UTC). The stored times are aware UTC; Flask-Admin's own filters pass naive ones."""

    def apply(self, query: Any, value: date, alias: Any = None) -> Any:
        return query.filter(self.get_column(alias) >= _utc_midnight(value))

    def operation(self) -> str:
        return str(_l("on or after"))


class AuditUntil(sqla_filters.DateSmallerFilter):
    def apply(self, query: Any, value: date, alias: Any = None) -> Any:
        return query.filter(self.get_column(alias) < _utc_midnight(value + timedelta(days=1)))

    def operation(self) -> str:
        return str(_l("on or before"))


class AuditBetween(sqla_filters.DateBetweenFilter):
    def apply(self, query: Any, value: tuple[date, date], alias: Any = None) -> Any:
        start, end = value
        column = self.get_column(alias)
        return query.filter(column >= _utc_midnight(start), column < _utc_midnight(end + timedelta(days=1)))

    def operation(self) -> str:
        return str(_l("between (days)"))


def _shown_details(model: AuditEntry) -> Any:
    """An entry's details as this reader may see them: customers' details inside masked for the roles that do not
    work with customers (app.accounts.pii); the stored entry, and its hash, are untouched."""
    return personal_data().audit_details(model.target_type, model.details or {})


def _details(view: Any, context: Any, model: AuditEntry, name: str) -> Markup:
    return Markup("<code class=\"small\">{}</code>").format(
        json.dumps(_shown_details(model), ensure_ascii=False, sort_keys=True)[:400])


class AuditLogView(ReadOnlyView):
    """The append-only audit log, with a button that checks its hash chain."""

    read_roles = ("admin", "auditor")
    list_template = "admin/audit/list.html"
    column_list = ("id", "at", "actor", "action", "target_type", "target_id", "details", "hash")
    column_export_list = ("id", "at", "actor", "action", "target_type", "target_id", "details", "prev_hash", "hash")
    column_labels = {"at": _l("When"), "actor": _l("Who"), "action": _l("What"), "target_type": _l("On"),
                     "target_id": _l("Id"), "details": _l("Details"), "hash": _l("Hash")}
    column_filters = ("actor", "action", "target_type", AuditFrom(AuditEntry.at, _l("When")),
                      AuditUntil(AuditEntry.at, _l("When")), AuditBetween(AuditEntry.at, _l("When")))
    column_searchable_list = ("actor", "action", "target_id")
    column_formatters = {"details": _details,
                         "hash": lambda v, c, m, n: Markup('<code class="small">{}…</code>').format(m.hash[:12])}
    column_formatters_export = {"details": lambda v, c, m, n: json.dumps(_shown_details(m), sort_keys=True)}
    column_default_sort = ("id", True)

    @expose("/verify")
    def verify(self) -> Any:
        result = verify_chain()
        broken = db.session.get(AuditEntry, result.first_broken_id) if result.first_broken_id else None
        return self.render("admin/audit/verify.html", result=result, broken=broken,
                           return_url=request.args.get("url"))


def register_views(admin: Any) -> None:
    from admin.channels import ChannelAccountView
    from admin.experiments import ExperimentView
    from admin.gateways import GatewayAccountView
    from admin.msgtemplates import TemplateView
    from admin.operations import CaseView, CustomerView, EscalationView, ReviewView
    from admin.policies import PolicyView
    from admin.profile import ProfileView
    from admin.quarantine import QuarantineView
    from admin.settings import SettingsView
    from admin.users import UserView
    from app.models import ChannelAccount, Customer, GatewayAccount, User

    session = db
    from admin.demo import register as register_demo_control  # only in the demo: elsewhere its URLs do not exist
    register_demo_control(admin)
    admin.add_view(PolicyView(name=_l("Policies"), endpoint="policies", url="/admin/policies"))
    admin.add_view(TemplateView(name=_l("Message templates"), endpoint="msgtemplates", url="/admin/templates"))
    admin.add_view(ExperimentView(name=_l("Experiments"), endpoint="experiments", url="/admin/experiments"))
    admin.add_view(CaseView(RecoveryCase, session, name=_l("Cases"), category=_l("Operations"), endpoint="cases"))
    admin.add_view(EscalationView(name=_l("Escalations"), category=_l("Operations"), endpoint="escalations",
                                  url="/admin/escalations"))
    admin.add_view(ReviewView(name=_l("Review"), category=_l("Operations"), endpoint="review", url="/admin/review"))
    admin.add_view(QuarantineView(name=_l("Quarantine"), category=_l("Operations"), endpoint="quarantine",
                                  url="/admin/quarantine"))
    admin.add_view(CustomerView(Customer, session, name=_l("Customers"), category=_l("Operations"),
                                endpoint="customers"))
    admin.add_view(TransactionView(Transaction, session, name=_l("Failed payments"), category=_l("Operations"),
                                   endpoint="transactions"))
    admin.add_view(OutboxView(OutboxMessage, session, name=_l("Messages"), category=_l("Operations"),
                              endpoint="messages"))
    admin.add_view(SettingsView(name=_l("Business rules"), category=_l("Settings"), endpoint="settings",
                                url="/admin/settings"))
    admin.add_view(GatewayAccountView(GatewayAccount, session, name=_l("Gateway accounts"), category=_l("Settings"),
                                      endpoint="gateway_accounts"))
    admin.add_view(ChannelAccountView(ChannelAccount, session, name=_l("Channel accounts"), category=_l("Settings"),
                                      endpoint="channel_accounts"))
    admin.add_view(UserView(User, session, name=_l("Users and roles"), category=_l("Settings"), endpoint="users"))
    admin.add_view(AuditLogView(AuditEntry, session, name=_l("Audit log"), endpoint="audit_log"))
    admin.add_view(ProfileView(name=_l("Your profile"), endpoint="profile", url="/admin/profile"))
