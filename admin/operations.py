"""Operations: cases and their timeline, customers (VIP, tags, opt-outs, timezone), the escalation queue, and the
review queue of messages whose outcome only a person can settle."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from flask import flash, redirect, request, session, url_for
from flask_admin import BaseView, expose
from flask_admin.contrib.sqla.filters import FilterEqual
from flask_babel import gettext as _
from flask_login import current_user
from markupsafe import Markup
from wtforms import StringField

from admin.i18n import _l
from admin.security import EVERYONE, RoleGuard, personal_data
from admin.ui import CHANNEL_LABELS, REASON_LABELS, when
from admin.views import AuditedModelView, ReadOnlyView
from app.audit import record
from app.extensions import db
from app.models import (
    Customer,
    EscalationTask,
    MessageEvent,
    OutboxMessage,
    RecoveryCase,
    Role,
    Transaction,
    User,
)
from app.outbox.review import resolve_review
from app.outbox.states import OutboxState
from app.payments.money import format_minor, minor_to_decimal
from app.recovery import case_actions, escalations
from app.recovery.case_search import case_search
from app.recovery.case_timeline import case_timeline
from rules.case_states import ACTIVE, TERMINAL, allowed_actions
from rules.vocabulary import CHANNELS

OPERATORS = ("operator", "admin")


class GatewayFilter(FilterEqual):
    """Cases by the gateway of their failed payment."""

    def apply(self, query: Any, value: Any, alias: Any = None) -> Any:
        return query.where(RecoveryCase.transaction_id.in_(
            sa.select(Transaction.id).where(Transaction.gateway == value)))

    def get_options(self, view: Any) -> list[tuple[str, str]]:
        # evaluated once when the view is built (no database then): the gateways Recoup speaks to
        return [("nmi", "NMI"), ("stripe", "Stripe"), ("authorizenet", "Authorize.Net")]


def _case_link(view: Any, context: Any, model: RecoveryCase, name: str) -> Markup:
    return Markup('<a href="{}">#{}</a>').format(url_for("cases.timeline", case_id=model.id), model.id)


def _case_state(view: Any, context: Any, model: RecoveryCase, name: str) -> Markup:
    from admin.ui import CASE_STATE_LABELS

    label = str(CASE_STATE_LABELS.get(model.state, model.state))
    if model.paused_at is not None and model.state not in TERMINAL:
        return Markup('{} <span class="badge badge-warning">{}</span>').format(label, _("paused"))
    if model.recovered_via == case_actions.RECOVERED_ELSEWHERE:
        return Markup('{} <span class="badge badge-light">{}</span>').format(label, _("paid elsewhere"))
    return Markup("{}").format(label)


class CaseView(ReadOnlyView):
    """Cases: one search box (name, email, phone, order id, gateway transaction id, case number;
    app.recovery.case_search),
    filters, and on each case's page its timeline and the operators' actions (app.recovery.case_actions)."""

    write_roles = OPERATORS  # the actions below; cases are never created, edited or deleted through a form
    column_list = ("id", "state", "segment", "priority", "customer", "gateway", "amount_due", "opened_at", "closed_at")
    column_labels = {"id": _l("Case"), "state": _l("State"), "segment": _l("Segment"), "priority": _l("Priority"),
                     "customer": _l("Customer"), "gateway": _l("Gateway"), "amount_due": _l("Amount due"),
                     "opened_at": _l("Opened"), "closed_at": _l("Closed"), "holdout": _l("Control group"),
                     "paused_at": _l("Paused since"), "paused_by": _l("Paused by"),
                     "recovered_via": _l("Recovered how"), "recovered_amount": _l("Recovered amount"),
                     "transaction": _l("Gateway transaction"), "policy_version_id": _l("Policy version"),
                     "escalated_to": _l("Escalated to"), "give_up_at": _l("Gives up at")}
    # the case's own page lists what a person reads (money as money, not minor units), never the plan's JSON
    column_details_list = ("id", "state", "customer", "gateway", "transaction", "amount_due", "recovered_amount",
                           "recovered_via", "segment", "priority", "holdout", "policy_version_id", "escalated_to",
                           "give_up_at", "opened_at", "closed_at", "paused_at", "paused_by")
    column_filters = ("state", "segment", "priority", "holdout",
                      GatewayFilter(RecoveryCase.transaction_id, _l("Gateway")))
    column_formatters = {
        "id": _case_link,
        "state": _case_state,
        "amount_due": lambda v, c, m, n: format_minor(m.amount_due_minor, m.currency),
        "gateway": lambda v, c, m, n: m.transaction.gateway if m.transaction else "",
        "recovered_amount": lambda v, c, m, n: format_minor(m.recovered_amount_minor, m.currency),
        "transaction": lambda v, c, m, n: m.transaction.gateway_transaction_id if m.transaction else "",
        "holdout": lambda v, c, m, n: _("Yes") if m.holdout else _("No"),
    }
    column_default_sort = ("opened_at", True)
    pii_columns = {"customer": "customer"}

    # -- search: one box, app.recovery.case_search
    # ---------------------------------------------------------------------------
    def init_search(self) -> bool:
        return True

    def search_placeholder(self) -> str:
        if not personal_data().full:  # no search by what they see masked (app.accounts.pii)
            return str(_l("Case number, order or transaction id"))
        return str(_l("Name, email, phone, order or transaction id"))

    def _apply_search(self, query: Any, count_query: Any, joins: Any, count_joins: Any, search: str) -> Any:
        condition = case_search(search, personal=personal_data().full)
        return (query.filter(condition), count_query.filter(condition) if count_query is not None else None,
                joins, count_joins)

    # -- the case's page --------------------------------------------------------------------------------------------
    @expose("/timeline/<int:case_id>")
    def timeline(self, case_id: int) -> Any:
        case = db.session.get(RecoveryCase, case_id)
        if case is None:
            flash(_("No such case."), "error")
            return redirect(url_for(".index_view"))
        customer = case.customer
        actions = allowed_actions(case.state, case.paused_at is not None) if self.can_write else frozenset()
        link = session.pop(_LINK_KEY, None)
        return self.render("admin/ops/case.html", case=case, entries=case_timeline(case), tx=case.transaction,
                           customer=customer, format_minor=format_minor, zone=_zone(case),
                           actions={a.value for a in actions},
                           link=link.get("url") if isinstance(link, dict) and link.get("case") == case.id else None,
                           amount_due=minor_to_decimal(case.amount_due_minor, case.currency),
                           action_label=_action_label, lift_label=_lift_label,
                           opt_outs=list(customer.opt_outs) if customer else [], active=case.state in ACTIVE)

    # -- operators' actions (POST; operators and admins: RoleGuard refuses everyone else with 403) -------------------
    @expose("/<int:case_id>/send-now", methods=["POST"])
    def send_now(self, case_id: int) -> Any:
        def act() -> str:
            result = case_actions.send_next_step_now(case_id, actor=current_user.email)
            channel = CHANNEL_LABELS.get(result.channel, result.channel)
            if result.at_once:
                return _("The next step (%(channel)s) goes now.", channel=channel)
            reasons = ", ".join(str(REASON_LABELS.get(r, r)) for r in result.reasons)
            return _("Not now (%(reasons)s for the customer): the next step (%(channel)s) goes at %(at)s, the earliest "
                     "moment allowed.", reasons=reasons, channel=channel, at=when(result.send_at, result.zone))

        return self._act(case_id, act)

    @expose("/<int:case_id>/pause", methods=["POST"])
    def pause(self, case_id: int) -> Any:
        def act() -> str:
            held = case_actions.pause_case(case_id, actor=current_user.email, reason=request.form.get("reason", ""))
            return _("Paused: %(n)d scheduled messages are held until the case is resumed.", n=held)

        return self._act(case_id, act)

    @expose("/<int:case_id>/resume", methods=["POST"])
    def resume(self, case_id: int) -> Any:
        def act() -> str:
            moved = case_actions.resume_case(case_id, actor=current_user.email)
            upcoming = [m for m in moved if m.send_at is not None and m.channel in CHANNELS]
            if not upcoming:
                return _("Resumed: nothing is left to send.")
            first = min(upcoming, key=lambda m: m.send_at)  # type: ignore[arg-type,return-value]
            return _("Resumed: the next message (%(channel)s) goes at %(at)s.",
                     channel=CHANNEL_LABELS.get(first.channel, first.channel),
                     at=when(first.send_at, _zone(db.session.get(RecoveryCase, case_id))))

        return self._act(case_id, act)

    @expose("/<int:case_id>/payment-link", methods=["POST"])
    def payment_link(self, case_id: int) -> Any:
        def act() -> str:
            session[_LINK_KEY] = {"case": case_id,
                                  "url": case_actions.payment_link(case_id, actor=current_user.email)}
            return _("A payment link for this case is ready to copy below.")

        return self._act(case_id, act)

    @expose("/<int:case_id>/paid-elsewhere", methods=["POST"])
    def paid_elsewhere(self, case_id: int) -> Any:
        def act() -> str:
            case = case_actions.mark_paid_elsewhere(case_id, request.form.get("amount", ""), actor=current_user.email,
                                                    note=request.form.get("note", ""))
            return _("Marked as paid elsewhere (%(amount)s); what was still scheduled is cancelled.",
                     amount=format_minor(case.recovered_amount_minor, case.currency))

        return self._act(case_id, act)

    @expose("/<int:case_id>/cancel", methods=["POST"])
    def cancel(self, case_id: int) -> Any:
        def act() -> str:
            n = case_actions.cancel_case(case_id, actor=current_user.email, reason=request.form.get("reason", ""))
            return _("Case cancelled; %(n)d scheduled messages were cancelled.", n=n)

        return self._act(case_id, act)

    def _act(self, case_id: int, action: Any) -> Any:
        try:
            flash(action(), "success")
        except case_actions.CaseActionError as exc:
            flash(str(exc), "error")
        return redirect(url_for(".timeline", case_id=case_id))


def _zone(case: RecoveryCase | None) -> str | None:
    """The customer's zone, to show a case's times as the customer lives them."""
    customer = case.customer if case is not None else None
    return (customer.timezone_explicit or customer.timezone) if customer is not None else None


#: the timeline's words for what operators did (audit actions ``case.<name>``)
ACTION_LABELS = {"send_now": _l("Asked to send the next step now"), "pause": _l("Paused"), "resume": _l("Resumed"),
                 "payment_link": _l("Made a payment link to give by hand"),
                 "paid_elsewhere": _l("Marked as paid elsewhere"), "cancel": _l("Cancelled the case")}


def _action_label(name: str) -> str:
    return str(ACTION_LABELS.get(name, name))


#: what an override lifts (rules.contact_rules), in words
LIFT_LABELS = {"business_hours": _l("business hours"), "weekends": _l("weekends"), "holidays": _l("public holidays"),
               "blackout": _l("blackout dates"), "cadence": _l("cadence caps")}


def _lift_label(name: str) -> str:
    return str(LIFT_LABELS.get(name, name))


#: where a freshly made payment link waits (the session) for the case page to show it once
_LINK_KEY = "recoup_case_link"


class TagsField(StringField):
    """Tags as the operator types them: ``vip, wholesale``; stored as a list."""

    def _value(self) -> str:
        return ", ".join(self.data or [])

    def process_formdata(self, valuelist: list[str]) -> None:
        raw = valuelist[0] if valuelist else ""
        self.data = sorted({t.strip().lower() for t in raw.split(",") if t.strip()})


def _opt_outs(view: Any, context: Any, model: Any, name: str) -> Markup:
    if not model.opt_outs:
        return Markup('<span class="text-muted">—</span>')
    return Markup(", ").join(
        Markup('<span class="badge badge-warning" title="{}">{}</span>').format(o.source, o.channel)
        for o in model.opt_outs)


class CustomerView(AuditedModelView):
    write_roles = OPERATORS
    create_allowed = False
    column_list = ("id", "name", "email", "phone_e164", "country", "region", "timezone", "timezone_source", "vip",
                   "tags", "opt_outs", "successful_payments", "failed_payments")
    column_labels = {"name": _l("Name"), "phone_e164": _l("Phone"), "timezone": _l("Time zone"),
                     "timezone_source": _l("Time zone from"), "vip": _l("VIP"), "tags": _l("Tags"),
                     "opt_outs": _l("Opted out of"), "successful_payments": _l("Paid"),
                     "failed_payments": _l("Failed"), "timezone_explicit": _l("Time zone (set by hand)")}
    column_searchable_list = ("email", "phone_e164", "last_name")
    pii_search = True  # nothing else to search by: not offered to those who see customers masked
    pii_columns = {"name": "name", "first_name": "name", "last_name": "name", "company": "place", "email": "email",
                   "phone_e164": "phone", "phone_raw": "phone", "city": "place", "postal_code": "postal"}
    column_filters = ("country", "vip", "timezone_source")
    column_formatters = {"opt_outs": _opt_outs, "tags": lambda v, c, m, n: ", ".join(m.tags or [])}
    column_formatters_detail = column_formatters
    form_columns = ("vip", "tags", "timezone_explicit", "locale")
    form_overrides = {"tags": TagsField}
    form_args = {"tags": {"description": _l("Separate tags with commas, e.g. wholesale, partner")},
                 "timezone_explicit": {"description": _l("An IANA zone such as America/New_York; always wins over "
                                                         "the detected one.")}}
    column_details_list = ("id", "name", "email", "phone_e164", "country", "region", "city", "postal_code", "timezone",
                           "timezone_candidates", "timezone_source", "timezone_confidence", "timezone_explicit",
                           "locale", "locale_source", "vip", "tags", "opt_outs", "successful_payments",
                           "failed_payments", "card_masked", "first_seen_at", "last_seen_at")

    def on_model_change(self, form: Any, model: Any, is_created: bool) -> None:
        zone = (model.timezone_explicit or "").strip() or None
        if zone:
            from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

            try:
                ZoneInfo(zone)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(_("“%(zone)s” is not a time zone (try America/New_York).", zone=zone)) from None
        model.timezone_explicit = zone
        from app.ingest.customer_locale import LocaleRefused, edited_by_hand

        typed = model.locale
        try:
            edited_by_hand(model)  # a locale chosen here is kept whatever country the gateway reports later
        except LocaleRefused:
            raise ValueError(_("“%(locale)s” is not a language we know: write one such as en_US, es_ES or es_MX.",
                               locale=typed)) from None
        super().on_model_change(form, model, is_created)


class EscalationView(RoleGuard, BaseView):
    read_roles = EVERYONE
    write_roles = OPERATORS

    @expose("/")
    def index(self) -> Any:
        state = request.args.get("state", "unresolved")
        tasks = escalations.queue(state=state, team=request.args.get("team") or None)
        cases = {c.id: c for c in db.session.scalars(
            sa.select(RecoveryCase).where(RecoveryCase.id.in_({t.case_id for t in tasks})))} if tasks else {}
        people = list(db.session.scalars(sa.select(User).join(User.roles).where(Role.name.in_(OPERATORS))
                                         .where(User.active.is_(True)).distinct().order_by(User.email)))
        names = {u.id: (u.name or u.email) for u in db.session.scalars(
            sa.select(User).where(User.id.in_({t.assigned_to_id for t in tasks if t.assigned_to_id})))} if tasks else {}
        teams = sorted(set(db.session.scalars(sa.select(EscalationTask.team).distinct())))
        return self.render("admin/ops/escalations.html", tasks=tasks, cases=cases, people=people, names=names,
                           state=state, teams=teams, team=request.args.get("team") or "",
                           can_change=self.can_write, format_minor=format_minor)

    def _do(self, action: Any, done: str) -> Any:
        try:
            action()
        except escalations.EscalationError as exc:
            db.session.rollback()
            flash(str(exc), "error")
        else:
            flash(done, "success")
        return redirect(request.referrer or url_for(".index"))

    @expose("/<int:task_id>/assign", methods=["POST"])
    def assign(self, task_id: int) -> Any:
        raw = request.form.get("user_id") or ""
        assignee = db.session.get(User, int(raw)) if raw.isdigit() else None
        return self._do(lambda: escalations.assign(task_id, assignee, actor=current_user), _("Assigned."))

    @expose("/<int:task_id>/note", methods=["POST"])
    def note(self, task_id: int) -> Any:
        return self._do(lambda: escalations.add_note(task_id, request.form.get("note", ""), actor=current_user),
                        _("Note added."))

    @expose("/<int:task_id>/resolve", methods=["POST"])
    def resolve(self, task_id: int) -> Any:
        return self._do(lambda: escalations.resolve(task_id, actor=current_user, note=request.form.get("note", "")),
                        _("Resolved."))



class ReviewView(RoleGuard, BaseView):
    """Outbox rows in ``review`` (see ``app.outbox``): an email that may or may not have reached the mail server,
    or an unknown outcome nobody could settle. A person says whether it was delivered; if not, it goes again."""

    read_roles = EVERYONE
    write_roles = OPERATORS

    @expose("/")
    def index(self) -> Any:
        rows = list(db.session.scalars(sa.select(OutboxMessage).where(OutboxMessage.state == OutboxState.REVIEW)
                                       .order_by(OutboxMessage.updated_at, OutboxMessage.id)))
        ids = [r.id for r in rows]
        last: dict[tuple[int, str], MessageEvent] = {}
        carried: dict[int, list[int]] = {}  # message -> other cases its consolidated email lists
        if ids:
            for event in db.session.scalars(
                sa.select(MessageEvent).where(MessageEvent.message_id.in_(ids),
                                              MessageEvent.kind.in_(("attempt", "review", "consolidated")))
                .order_by(MessageEvent.id)
            ):
                last[(event.message_id, event.kind)] = event
                if event.kind == "consolidated":
                    carried.setdefault(event.message_id, []).extend((event.provider_payload or {}).get("cases") or [])
        case_ids = {r.case_id for r in rows if r.case_id} | {c for cs in carried.values() for c in cs}
        cases = {c.id: c for c in db.session.scalars(
            sa.select(RecoveryCase).where(RecoveryCase.id.in_(case_ids)))} if case_ids else {}
        customer_ids = {r.customer_id for r in rows if r.customer_id}
        customers = {c.id: c for c in db.session.scalars(
            sa.select(Customer).where(Customer.id.in_(customer_ids)))} if customer_ids else {}
        items = [{
            "message": r,
            "customer": customers.get(r.customer_id) if r.customer_id else None,
            "case": cases.get(r.case_id) if r.case_id else None,
            "also": [cases[c] for c in carried.get(r.id, []) if c in cases],
            "attempt": last.get((r.id, "attempt")),
            "review": last.get((r.id, "review")),
        } for r in rows]
        return self.render("admin/ops/review.html", items=items, can_change=self.can_write, format_minor=format_minor)

    @expose("/<int:message_id>/delivered", methods=["POST"])
    def delivered(self, message_id: int) -> Any:
        return self._resolve(message_id, delivered=True)

    @expose("/<int:message_id>/resend", methods=["POST"])
    def resend(self, message_id: int) -> Any:
        return self._resolve(message_id, delivered=False)

    def _resolve(self, message_id: int, *, delivered: bool) -> Any:
        # The row lock (MariaDB) makes the check, the audit entry and resolve_review's change one transaction: two
        # people deciding at once get one decision and one audit entry; the second is told who was first.
        row = db.session.scalar(sa.select(OutboxMessage).where(OutboxMessage.id == message_id).with_for_update()
                                .execution_options(populate_existing=True))
        if row is None or row.state != OutboxState.REVIEW:
            db.session.rollback()
            flash(_already_settled(message_id, row), "warning")
        else:
            record(current_user.email, "message.review_resolved", "outbox_message", row.id,
                   {"delivered": delivered, "case": row.case_id, "channel": row.channel, "to": row.address})
            if not resolve_review(message_id, delivered=delivered, actor=current_user.email):
                flash(_already_settled(message_id, db.session.get(OutboxMessage, message_id)), "warning")
            elif delivered:
                flash(_("Message #%(id)d is marked as delivered; it will not be sent again.", id=message_id),
                      "success")
            else:
                flash(_("Message #%(id)d will be sent again on the next dispatch run.", id=message_id), "success")
        return redirect(request.referrer or url_for(".index"))


def _already_settled(message_id: int, row: OutboxMessage | None) -> str:
    if row is None:
        return _("There is no message #%(id)d.", id=message_id)
    decision = db.session.scalar(sa.select(MessageEvent).where(MessageEvent.message_id == message_id,
                                                               MessageEvent.kind == "reviewed")
                                 .order_by(MessageEvent.id.desc()).limit(1))
    if decision is not None:
        payload = decision.provider_payload or {}
        return _("Message #%(id)d was already settled by %(who)s (%(what)s); nothing was changed.", id=message_id,
                 who=payload.get("by") or "?",
                 what=_("delivered") if payload.get("delivered") else _("sent again"))
    return _("Message #%(id)d is no longer waiting for review (it is %(state)s); nothing was changed.",
             id=message_id, state=row.state)
