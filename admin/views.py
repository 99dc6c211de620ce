"""Flask-Admin views over the models, for business users, operators and auditors."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from flask_admin import AdminIndexView, expose
from flask_admin.contrib.sqla import ModelView
from flask_login import current_user

from admin.security import EVERYONE, RoleGuard
from app.audit import record
from app.extensions import db
from app.models import (
    AuditEntry,
    Customer,
    GatewayAccount,
    OutboxMessage,
    RecoveryCase,
    Transaction,
)
from app.money import format_minor


class HomeView(RoleGuard, AdminIndexView):
    read_roles = EVERYONE

    @expose("/")
    def index(self) -> Any:
        counts = dict(
            db.session.execute(sa.select(RecoveryCase.state, sa.func.count()).group_by(RecoveryCase.state)).all()
        )
        recovered = db.session.scalar(
            sa.select(sa.func.coalesce(sa.func.sum(RecoveryCase.recovered_amount_minor), 0)).where(
                RecoveryCase.state == "recovered"
            )
        )
        scheduled = db.session.scalar(
            sa.select(sa.func.count()).select_from(OutboxMessage).where(OutboxMessage.state == "scheduled")
        )
        return self.render("admin/home.html", counts=counts, recovered_minor=recovered or 0, scheduled=scheduled)


class AuditedModelView(RoleGuard, ModelView):
    """Every change through the admin is written to the audit log, in the same transaction."""

    page_size = 50
    can_view_details = True

    def on_model_change(self, form: Any, model: Any, is_created: bool) -> None:
        changed = {name: str(field.data)[:200] for name, field in form._fields.items()
                   if name not in self.audit_hidden_fields and field.data != field.object_data}
        record(current_user.email, f"{model.__tablename__}.{'create' if is_created else 'update'}",
               model.__tablename__, getattr(model, "id", None), {"changed": changed})

    def on_model_delete(self, model: Any) -> None:
        record(current_user.email, f"{model.__tablename__}.delete", model.__tablename__, getattr(model, "id", None))

    audit_hidden_fields: tuple[str, ...] = ()


class ReadOnlyView(AuditedModelView):
    create_allowed = edit_allowed = delete_allowed = False


class CustomerView(AuditedModelView):
    write_roles = ("admin", "operator")
    create_allowed = False
    column_list = ("id", "first_name", "last_name", "email", "phone_e164", "country", "region", "timezone",
                   "timezone_source", "vip", "successful_payments", "failed_payments")
    column_searchable_list = ("email", "phone_e164", "last_name")
    column_filters = ("country", "vip", "timezone_source")
    form_columns = ("vip", "tags", "timezone_explicit", "locale")
    column_details_exclude_list = ("phone_raw",)


class TransactionView(ReadOnlyView):
    column_list = ("id", "gateway", "gateway_transaction_id", "customer", "amount", "value_band", "decline_code",
                   "decline_reason", "product_type", "failed_at")
    column_filters = ("gateway", "decline_reason", "decline_kind", "value_band", "product_type")
    column_searchable_list = ("gateway_transaction_id", "order_id")
    column_formatters = {"amount": lambda v, c, m, n: format_minor(m.amount_minor, m.currency)}
    column_details_exclude_list = ("raw",)


class CaseView(ReadOnlyView):
    column_list = ("id", "state", "segment", "priority", "customer", "amount_due", "opened_at", "closed_at")
    column_filters = ("state", "segment", "priority", "holdout")
    column_formatters = {"amount_due": lambda v, c, m, n: format_minor(m.amount_due_minor, m.currency)}
    column_default_sort = ("opened_at", True)


class OutboxView(ReadOnlyView):
    column_list = ("id", "case_id", "channel", "template", "variant", "state", "scheduled_for", "sent_at",
                   "policy_version_id", "rule_line")
    column_filters = ("channel", "state", "priority", "variant")
    column_default_sort = ("scheduled_for", True)


class GatewayAccountView(AuditedModelView):
    read_roles = ("admin", "auditor")
    write_roles = ("admin",)
    column_list = ("name", "gateway", "api_url", "enabled", "created_at")
    column_exclude_list = ("credentials_encrypted",)
    column_details_exclude_list = ("credentials_encrypted",)
    form_excluded_columns = ("credentials_encrypted", "created_at", "updated_at")


class AuditLogView(ReadOnlyView):
    read_roles = ("admin", "auditor")
    column_list = ("id", "at", "actor", "action", "target_type", "target_id", "hash")
    column_filters = ("actor", "action", "target_type")
    column_default_sort = ("id", True)


def register_views(admin: Any) -> None:
    session = db
    admin.add_view(CaseView(RecoveryCase, session, name="Cases", category="Operations", endpoint="cases"))
    admin.add_view(CustomerView(Customer, session, name="Customers", category="Operations", endpoint="customers"))
    admin.add_view(TransactionView(Transaction, session, name="Failed payments", category="Operations",
                                   endpoint="transactions"))
    admin.add_view(OutboxView(OutboxMessage, session, name="Messages", category="Operations", endpoint="messages"))
    admin.add_view(GatewayAccountView(GatewayAccount, session, name="Gateway accounts", category="Settings",
                                      endpoint="gateway_accounts"))
    admin.add_view(AuditLogView(AuditEntry, session, name="Audit log", category="Audit", endpoint="audit_log"))
